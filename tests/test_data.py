import numpy as np
import pandas as pd
import pytest

from conftest import write_table
from twohead.config.params import DataParams, SplitParams
from twohead.data.io import DataError
from twohead.data.labels import IGNORE, prepare, stratified_split


def rows(n_per_cat=10, cats=("A", "B", "C"), decline=5):
    out = []
    for c in cats:
        for i in range(n_per_cat):
            out.append({"id": f"{c}{i}", "text": f"text about {c} number {i}", "pick": "Pick", "category": c})
    for i in range(decline):
        out.append({"id": f"D{i}", "text": f"funny story {i}", "pick": "Decline", "category": ""})
    return out


def cfg(path, **kw):
    return DataParams(raw_path=str(path), **kw)


def test_label_mapping_and_masking(tmp_path):
    r = rows()
    r[0]["pick"] = ""            # category-only row
    r[1]["category"] = ""        # Pick-only row
    r.append({"id": "X", "text": "unlabelled", "pick": "", "category": ""})  # no label at all: dropped
    path = write_table(tmp_path / "raw.csv", r)
    prep = prepare(cfg(path), SplitParams(val_ratio=0.2, test_ratio=0.2, seed=1))
    assert prep.categories == ["A", "B", "C"]
    assert prep.dropped == {"no_label": 1}
    df = pd.concat(prep.splits.values()).set_index("id")
    assert df.loc["A0", "labels_task1"] == IGNORE and df.loc["A0", "labels_task2"] == 0
    assert df.loc["A1", "labels_task1"] == 1 and df.loc["A1", "labels_task2"] == IGNORE
    assert df.loc["B3", "labels_task1"] == 1 and df.loc["B3", "labels_task2"] == 1
    assert df.loc["C9", "labels_task2"] == 2
    assert (df.loc[[f"D{i}" for i in range(5)], "labels_task1"] == 0).all()
    assert (df.loc[[f"D{i}" for i in range(5)], "labels_task2"] == IGNORE).all()
    assert "X" not in df.index
    assert len(df) == 35


def test_pick_spellings_are_configurable_and_case_insensitive(tmp_path):
    r = rows()
    for x in r:
        x["pick"] = {"Pick": "yes", "Decline": "NO"}[x["pick"]]
    path = write_table(tmp_path / "raw.jsonl", r)
    prep = prepare(cfg(path, pick_values=["Yes"], decline_values=["no"]), SplitParams())
    df = pd.concat(prep.splits.values())
    assert sorted(df["labels_task1"].unique()) == [0, 1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_unknown_pick_spelling_names_file_row_and_value(tmp_path, suffix):
    r = rows()
    r[4]["pick"] = "Maybe"
    path = write_table(tmp_path / f"raw{suffix}", r)
    with pytest.raises(DataError) as e:
        prepare(cfg(path), SplitParams())
    msg = str(e.value)
    assert str(path) in msg and "row 4" in msg and "'Maybe'" in msg and "'pick'" in msg and "'A4'" in msg


def test_missing_column(tmp_path):
    path = write_table(tmp_path / "raw.csv", [{k: v for k, v in x.items() if k != "category"} for x in rows()])
    with pytest.raises(DataError, match=r"column 'category' \(data.category_column\) not found"):
        prepare(cfg(path), SplitParams())


def test_empty_text(tmp_path):
    r = rows()
    r[7]["text"] = "   "
    path = write_table(tmp_path / "raw.csv", r)
    with pytest.raises(DataError, match=r"row 7 \(line 9 of the CSV\) \(id 'A7'\): empty text in column 'text'"):
        prepare(cfg(path), SplitParams())


def test_nan_text_in_parquet(tmp_path):
    r = rows()
    r[2]["text"] = None
    path = write_table(tmp_path / "raw.parquet", r)
    with pytest.raises(DataError, match=r"row 2 \(id 'A2'\): empty text"):
        prepare(cfg(path), SplitParams())


def test_duplicate_ids(tmp_path):
    r = rows()
    r[5]["id"] = "A1"
    path = write_table(tmp_path / "raw.csv", r)
    with pytest.raises(DataError, match=r"row 5 .*duplicate id 'A1'.*first seen at row 1"):
        prepare(cfg(path), SplitParams())


def test_empty_file(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare(cfg(path), SplitParams())
    path.write_text("id,text,pick,category\n")
    with pytest.raises(DataError, match="no data rows"):
        prepare(cfg(path), SplitParams())


def test_decline_with_category_is_error_or_dropped(tmp_path):
    r = rows()
    r[-1]["category"] = "A"
    path = write_table(tmp_path / "raw.csv", r)
    with pytest.raises(DataError, match=r"\(id 'D4'\): Decline row with category 'A'"):
        prepare(cfg(path), SplitParams())
    prep = prepare(cfg(path, decline_with_category="drop_category"), SplitParams())
    assert prep.decline_category_dropped == 1
    df = pd.concat(prep.splits.values()).set_index("id")
    assert df.loc["D4", "labels_task2"] == IGNORE and df.loc["D4", "labels_task1"] == 0


def test_category_only_in_val_or_test_is_an_error(tmp_path):
    r = rows()
    for i, x in enumerate(r):
        x["split"] = ["train", "validation", "test"][i % 3]
    r.append({"id": "Z", "text": "new topic", "pick": "Pick", "category": "ZETA", "split": "test"})
    path = write_table(tmp_path / "raw.csv", r)
    with pytest.raises(DataError, match=r"category 'ZETA' \(id 'Z', split 'test'\) never occurs in the train split"):
        prepare(cfg(path, split_column="split"), SplitParams())


def test_split_column_is_used_and_spellings_normalised(tmp_path):
    r = rows()
    for i, x in enumerate(r):
        x["split"] = ["train", "Dev", "TEST", "train"][i % 4]
    path = write_table(tmp_path / "raw.csv", r)
    prep = prepare(cfg(path, split_column="split"), SplitParams())
    assert [len(prep.splits[s]) for s in ("train", "val", "test")] == [17, 9, 9]
    r[0]["split"] = "holdout"
    path = write_table(tmp_path / "raw2.csv", r)
    with pytest.raises(DataError, match="split value 'holdout'"):
        prepare(cfg(path, split_column="split"), SplitParams())


def test_splits_are_deterministic_disjoint_and_stratified(tmp_path):
    path = write_table(tmp_path / "raw.csv", rows(n_per_cat=40, decline=20))
    a = prepare(cfg(path), SplitParams(val_ratio=0.1, test_ratio=0.2, seed=7))
    shuffled = pd.read_csv(path, dtype=str, keep_default_na=False).sample(frac=1.0, random_state=3)
    path2 = tmp_path / "shuffled.csv"
    shuffled.to_csv(path2, index=False)
    b = prepare(cfg(path2), SplitParams(val_ratio=0.1, test_ratio=0.2, seed=7))
    ids = {s: set(a.splits[s]["id"]) for s in a.splits}
    for s in a.splits:  # the split does not depend on the row order of the file
        assert ids[s] == set(b.splits[s]["id"])
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    for c in (0, 1, 2):  # each category: 40 rows -> 8 test, 4 val, 28 train
        assert [int((a.splits[s]["labels_task2"] == c).sum()) for s in ("train", "val", "test")] == [28, 4, 8]
    assert [int((a.splits[s]["labels_task1"] == 0).sum()) for s in ("train", "val", "test")] == [14, 2, 4]
    c = prepare(cfg(path), SplitParams(val_ratio=0.1, test_ratio=0.2, seed=8))
    assert set(c.splits["test"]["id"]) != ids["test"]


def test_a_new_stratum_does_not_move_the_others(tmp_path):
    base = rows(n_per_cat=30)
    a = prepare(cfg(write_table(tmp_path / "a.csv", base)), SplitParams(seed=3))
    more = base + [{"id": f"N{i}", "text": f"new {i}", "pick": "Pick", "category": "NEW"} for i in range(12)]
    b = prepare(cfg(write_table(tmp_path / "b.csv", more)), SplitParams(seed=3))
    assert set(a.splits["test"]["id"]) <= set(b.splits["test"]["id"])
    assert set(b.splits["test"]["id"]) - set(a.splits["test"]["id"]) <= {f"N{i}" for i in range(12)}


def test_rare_category_goes_wholly_to_train(tmp_path):
    r = rows() + [{"id": f"R{i}", "text": f"rare {i}", "pick": "Pick", "category": "RARE"} for i in range(2)]
    prep = prepare(cfg(write_table(tmp_path / "raw.csv", r)), SplitParams(val_ratio=0.1, test_ratio=0.1))
    assert prep.rare_train_only == ["RARE"]
    assert set(prep.splits["train"]["category"].dropna()) >= {"RARE"}
    for s in ("val", "test"):
        assert "RARE" not in set(prep.splits[s]["category"].dropna())


def test_three_rows_give_one_to_each_split():
    df = pd.DataFrame({"id": ["a", "b", "c"], "category": ["X"] * 3, "pick": [1, 1, 1]})
    assign, rare = stratified_split(df, SplitParams(val_ratio=0.1, test_ratio=0.1, seed=0))
    assert sorted(assign) == ["test", "train", "val"] and rare == []
    assign, rare = stratified_split(df.iloc[:2], SplitParams(val_ratio=0.1, test_ratio=0.1, seed=0))
    assert list(assign) == ["train", "train"] and rare == ["X"]
    assign, rare = stratified_split(df.iloc[:2], SplitParams(val_ratio=0.1, test_ratio=0.0, seed=0))
    assert sorted(assign) == ["train", "val"] and rare == []


def test_ids_are_read_as_text(tmp_path):
    r = rows()
    for i, x in enumerate(r):
        x["id"] = f"{i:04d}"
    prep = prepare(cfg(write_table(tmp_path / "raw.csv", r)), SplitParams())
    ids = set(pd.concat(prep.splits.values())["id"])
    assert "0007" in ids and np.all([len(i) == 4 for i in ids])


def test_demo_table_follows_its_rules():
    from conftest import DEMO_CSV
    from twohead.demo import DECLINE_CATEGORIES

    df = pd.read_csv(DEMO_CSV, dtype=str, keep_default_na=False)
    assert df["id"].is_unique and (df["text"].str.len() > 0).all()
    decline = df["pick"] == "Decline"
    assert (df.loc[decline, "category"] == "").all()
    assert not df.loc[~decline, "category"].isin(DECLINE_CATEGORIES).any()
    pick_rows = ~decline
    share = (df.loc[pick_rows, "pick"] == "").mean()
    assert 0.13 < share < 0.17  # the documented ~15% category-only rows
    assert (df.loc[pick_rows, "category"] != "").all()


def test_metrics_files_round_to_six_significant_digits(tmp_path):
    """Float noise in the 7th digit (another machine) must not change a committed metrics file; exact JSON stays
    exact where later code computes with it."""
    import json

    from twohead.data.io import write_json

    obj = {"acc": 0.7421052631578947, "n": 950, "nested": [1.23456789e-7, float("nan")], "name": "x"}
    write_json(tmp_path / "m.json", obj, digits=6)
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.742105, "n": 950,
                                                            "nested": [1.23457e-07, None], "name": "x"}
    noisy = {**obj, "acc": 0.7421052631578947 + 3e-12}
    write_json(tmp_path / "n.json", noisy, digits=6)
    assert (tmp_path / "n.json").read_bytes() == (tmp_path / "m.json").read_bytes()
    write_json(tmp_path / "exact.json", obj)
    assert json.loads((tmp_path / "exact.json").read_text())["acc"] == 0.7421052631578947


# --- reliability round 3: junk cells, numeric labels, category names, CSV shape ---------------------------------

def _jsonl(path, records):
    import json
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("junk, kind", [(["a", "list"], "a list"), ({"k": 1}, "an object")])
def test_jsonl_text_that_is_a_structure_is_an_error_naming_the_line(tmp_path, junk, kind):
    r = rows()
    r[6]["text"] = junk
    path = _jsonl(tmp_path / "raw.jsonl", r)
    want = rf"raw.jsonl: row 6 \(line 7\): column 'text' \(data.text_column\) holds {kind}"
    with pytest.raises(DataError, match=want):
        prepare(cfg(path), SplitParams())


def test_jsonl_text_that_is_a_number_is_an_error_with_the_count(tmp_path):
    r = rows()
    r[2]["text"], r[9]["text"] = 12345, 7.5
    path = _jsonl(tmp_path / "raw.jsonl", r)
    with pytest.raises(DataError, match=r"row 2 \(line 3\): column 'text' .* holds the number 12345, not text; 2 such"):
        prepare(cfg(path), SplitParams())


def test_csv_row_with_missing_fields_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "raw.csv"
    write_table(path, rows())
    lines = path.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + "," + lines[5].split(",")[1]  # id and text only: pick and category gone
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"raw.csv: line 6 has 2 field\(s\), the header has 4 \(fields are missing"):
        prepare(cfg(path), SplitParams())


def test_semicolon_csv_with_commas_in_texts_says_what_it_looks_like(tmp_path):
    path = tmp_path / "raw.csv"
    body = ["id;text;pick;category"] + [f"{x['id']};{x['text']}, with a comma;{x['pick']};{x['category']}"
                                        for x in rows()]
    path.write_text("\n".join(body) + "\n")
    with pytest.raises(DataError, match=r"line 2 has 2 field\(s\), the header has 1 .*looks semicolon-separated") as e:
        prepare(cfg(path), SplitParams())
    assert str(e.value).count(str(path)) == 1 and "cannot be read as" not in str(e.value)  # said once, not wrapped


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_one_zero_pick_column_with_blanks_matches_1_and_0(tmp_path, suffix):
    r = rows()
    for x in r:
        x["pick"] = {"Pick": 1, "Decline": 0}[x["pick"]]
    r[0]["pick"] = None  # a blank: JSON Lines / Parquet then hold 1.0 / 0.0 floats
    if suffix == ".csv":
        for x in r:
            x["pick"] = "" if x["pick"] is None else f"{x['pick']}.0"  # what a spreadsheet export may write
    path = (_jsonl(tmp_path / "raw.jsonl", r) if suffix == ".jsonl" else write_table(tmp_path / f"raw{suffix}", r))
    prep = prepare(cfg(path, pick_values=["1"], decline_values=["0"]), SplitParams())
    df = pd.concat(prep.splits.values()).set_index("id")
    assert df.loc["A0", "labels_task1"] == IGNORE
    assert df.loc["A1", "labels_task1"] == 1 and df.loc["D0", "labels_task1"] == 0
    assert (df["labels_task1"] != IGNORE).sum() == len(df) - 1


def test_integer_pick_values_in_params_say_quote_it():
    from twohead.config.params import ParamsError, params_from_dict
    with pytest.raises(ParamsError, match=r'data.pick_values\[0\] must be a string, got 1 \(quote it: "1"\)'):
        params_from_dict({"data": {"pick_values": [1]}}, partial=True)


def test_category_with_a_newline_is_refused_and_whitespace_stripped(tmp_path):
    r = rows()
    r[3]["category"] = "  B  "  # surrounding whitespace: the same class as "B"
    path = _jsonl(tmp_path / "raw.jsonl", r)
    assert prepare(cfg(path), SplitParams()).categories == ["A", "B", "C"]
    r[4]["category"] = "ENTER\nTAINMENT"
    path = _jsonl(tmp_path / "raw.jsonl", r)
    with pytest.raises(DataError, match=r"row 4 \(line 5\) \(id 'A4'\): category 'ENTER\\nTAINMENT' .* line break"):
        prepare(cfg(path), SplitParams())


def test_category_with_a_comma_is_kept_with_a_warning(tmp_path):
    r = rows(cats=("A", "B", "WORLD, POLITICS"))
    path = write_table(tmp_path / "raw.csv", r)
    prep = prepare(cfg(path), SplitParams())
    assert prep.categories == ["A", "B", "WORLD, POLITICS"]
    assert any("1 category name(s) contain a comma ('WORLD, POLITICS')" in w for w in prep.warnings)
