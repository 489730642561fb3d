"""plots/summary.md says what the user gets: the decided figures beside plain, every metric a decision made worse,
what the noise guard kept, and how close the misses are."""

from twohead.evaluate.summary import decision_cost, figures_table, guard_lines


def _split(acc, task1, decline_p, top2=None, share=None):
    t2 = {"acc": acc, "macro_f1": 0.2}
    if top2 is not None:
        t2.update({"top2_acc": top2, "top3_acc": top2 + 0.05, "runner_up_share": share})
    return {"task2": t2, "task1": {"acc": task1, "f1_pick": 0.98, "precision_decline": decline_p},
            "combined": {"acc": 0.6}}


def test_the_first_table_shows_plain_and_what_predict_delivers():
    test = {"test": _split(0.6063, 0.9636, 0.75, top2=0.75, share=0.45),
            "decided": {"test": _split(0.6063, 0.9467, 0.5217)}}
    lines = figures_table(test)
    assert lines[2].startswith("| plain") and "| 0.9636 |" in lines[2] and "| 0.7500 |" in lines[2]
    assert "what `twohead predict` delivers" in lines[3] and "| 0.9467 |" in lines[3] and "| 0.5217 |" in lines[3]
    said = "\n".join(lines)
    assert "top-2 0.7500, top-3 0.8000" in said and "45% have the right category as the runner-up" in said
    assert "often close" in said
    test["test"]["task2"]["runner_up_share"] = 0.2
    assert "often close" not in "\n".join(figures_table(test))


def test_the_cost_counts_every_metric_made_worse():
    m = {"task2_acc": {"delta": 0.0, "verdict": "within noise"},
         "task1_acc": {"delta": -0.017, "verdict": "worse"},
         "decline_precision": {"delta": -0.228, "verdict": "worse"},
         "decline_recall": {"delta": 0.05, "verdict": "within noise"},
         "task2_ece": {"delta": 0.01, "verdict": "within noise"},   # lower is better: +1 point is a cost
         "combined_acc": {"delta": -0.002, "verdict": "within noise"}}
    cost = decision_cost(m)
    assert "**Task1 accuracy -1.7 (worse)**" in cost and "**Decline precision -22.8 (worse)**" in cost
    assert "Task2 ECE (15 bins) +1.0" in cost and "combined (N+Decline) accuracy -0.2" in cost
    assert "Decline recall" not in cost and "Task2 accuracy" not in cost.replace("Task2 ECE", "")
    assert decision_cost({"task2_acc": {"delta": 0.01, "verdict": "better"}}) == "none on test"


def test_the_guard_lines_say_what_was_kept():
    guard = {"temperature_task1": {"adopted": True, "beats_noise": True, "gain": 0.02, "ci_low": 0.01,
                                   "ci_high": 0.03},
             "temperature_task2": None, "prior_correction": None,
             "decline_rule": {"adopted": False, "beats_noise": False, "gain": 0.0034, "ci_low": -0.006,
                              "ci_high": 0.013}}
    text = "\n".join(guard_lines(guard))
    assert "- temperature T1: adopted (NLL gain +0.0200 [+0.0100, +0.0300])" in text
    assert ("- Decline rule thresholds: **not adopted: within val's noise, the plain choice is kept** (val"
            " decide.objective gain +0.3 points [-0.6, +1.3])") in text
    assert "prior correction" not in text and guard_lines(None) == []


def test_the_route_table_opens_with_the_gap_and_says_what_is_unmeasured():
    from twohead.evaluate.route import route_section

    test = {"test": _split(0.6063, 0.9636, 0.75), "decided": {"test": _split(0.6063, 0.9636, 0.75)},
            "decided_vs_plain": {"metrics": {"task2_acc": {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                                                           "verdict": "within noise"}}}}
    text = "\n".join(route_section(test, 0.85))
    assert "Test Task2 accuracy **0.6063**" in text and "target **0.8500**" in text and "gap of **24.4 points**" in text
    assert "| more labelled rows | not measured — `twohead curve`" in text
    assert "| merge the most confused category pairs | not measured — `dvc repro review`" in text
    assert "reached" in "\n".join(route_section(test, 0.6))

    review = {"splits": {"test": {"task2": {"rows": 950, "flagged": 318}, "task2_acc": 0.606316,
                                  "task2_acc_without_flagged": 0.911}},
              "queue": {"path": "metrics/label_issues.csv"},
              "cumulative_merges": [{"pairs": 1, "merged": "POLITICS + U.S. NEWS", "gain": 0.0706, "gain_low": 0.0547,
                                     "gain_high": 0.0884},
                                    {"pairs": 2, "merged": "CRIME + <b>U.S. NEWS</b>", "gain": 0.1, "gain_low": 0.08,
                                     "gain_high": 0.12}]}
    curve = {"measured": True, "train_rows": 8006, "runs": 6, "fractions": [0.25, 0.5, 1.0], "seeds": [1, 2],
             "fit": {"chosen": "loglin"}, "projection": [
                 {"times": 2, "rows": 16012, "acc": 0.677, "gain": 0.052, "gain_low": 0.046, "gain_high": 0.058},
                 {"times": 4, "rows": 32024, "acc": 0.727, "gain": 0.102, "gain_low": 0.093, "gain_high": 0.112}]}
    text = "\n".join(route_section(test, 0.85, review, curve))
    assert "+7.1 [+5.5, +8.8] (1 pair); +10.0 [+8.0, +12.0] (2 pairs together)" in text
    assert "**positive by construction**" in text and "<b>" not in text
    assert "**withheld**" in text and "the model gets 374 wrong, so the flags cover 85% of its errors" in text
    assert "+5.2 at 2× (16,012 rows; seeds +4.6 to +5.8); +10.2 at 4× (32,024 rows; seeds +9.3 to +11.2)" in text
    assert "log-linear (grows without bound" in text
    review["splits"]["test"]["task2"]["flagged"] = 100    # a model whose flags are not its errors: the upper bound
    assert "at most +30.5 (every flag confirmed: an upper bound)" in "\n".join(route_section(test, 0.85, review))


def test_a_tokenizer_that_misses_the_texts_comes_first():
    """The tokenize stage's figures (metrics/tokenizer.json): past 1% of the characters inside unknown tokens the
    page says so before anything else; a tokenizer that reads the texts adds nothing."""
    from twohead.evaluate.summary import coverage_lines

    bad = {"texts": 500, "unknown_share": 0.318, "unknown_char_share": 0.89, "unknown_examples": ["首相は|<b>"],
           "ready": False}
    lines = coverage_lines(bad)
    assert lines[0].startswith("**Not ready: the tokenizer cannot read these texts.** 89.0% of the characters")
    assert "31.8% of the tokens" in lines[0] and "<b>" not in lines[0] and "\\|" in lines[0]
    warn = coverage_lines({**bad, "unknown_char_share": 0.02, "unknown_share": 0.01, "ready": True})
    assert warn[0].startswith("**The tokenizer misses part of these texts.** 2.0%")
    assert coverage_lines({**bad, "unknown_char_share": 0.001, "unknown_share": 0.002, "ready": True}) == []
    assert coverage_lines(None) == []
