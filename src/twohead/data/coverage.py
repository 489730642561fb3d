"""Can this checkpoint's tokenizer read these texts? Measured on a sample before any training: the share of
**characters** inside unknown tokens, the share of tokens that are the unknown token, and the share of characters
the tokenizer's normaliser changes or drops beyond case (an uncased English normaliser strips Japanese voicing
marks: インタビュー → インタヒュー), with examples.

An English-vocabulary checkpoint on Japanese news passed every other check while 21% of its tokens were
``[UNK]``: the costliest silent mistake there is. The token share understates it: a SentencePiece tokenizer folds a
whole run of unknown characters into one ``[UNK]`` (Japanese news on the English demo tokenizer: 31.8% of the tokens,
89% of the characters). So the characters decide: past :data:`NOT_READY_CHARS` ``twohead check`` says **not
ready** (exit 1), and the tokenize stage and ``plots/summary.md`` say so first; past :data:`UNKNOWN_WARN` /
:data:`CHANGED_WARN` they warn. The tokenize stage writes the figures to ``metrics/tokenizer.json``.

Why 5% of the characters: a tokenizer made for the texts loses well under 1% (the from-scratch tokenizer on the
demo's held-out val texts: 0.05%; MiniLM's English WordPiece on them: 0.001%), a tokenizer of another script loses
most of them (89% above; MiniLM on the tests' Japanese rows: 38%); at 5% one character in 20 — two or three per headline — never reaches the model, which no
training recipe can recover, while an occasional rare symbol (under 1%) only warns.
"""

from __future__ import annotations

import difflib
import unicodedata

import numpy as np

SAMPLE = 500           # texts measured (a seeded sample)
UNKNOWN_WARN = 0.01    # warn when more than 1% of the content tokens are the unknown token
NOT_READY_CHARS = 0.05  # not ready: more than 5% of the characters sit inside unknown tokens (see above)
CHANGED_WARN = 0.01    # warn when the normaliser changes or drops more than 1% of the characters (case aside)
EXAMPLES = 3


def _plain(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())  # width / compatibility forms: no loss


def _changed_chars(tokenizer, text: str) -> tuple[int, int, str | None]:
    """(characters changed or dropped by the normaliser, characters, one example "a→b") for one text; case,
    whitespace and NFKC's compatibility forms (full-width ！ → !) do not count."""
    norm = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    before = _plain(text)
    if norm is None or not before:
        return 0, len(before), None
    after = _plain(norm.normalize_str(text))
    lost, example = 0, None
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            lost += i2 - i1
            if example is None:
                example = f"{before[max(i1 - 3, 0):i2 + 3]} → {after[max(j1 - 3, 0):j2 + 3]}"
    return lost, len(before), example


def coverage(tokenizer, texts: list[str], sample: int = SAMPLE, seed: int = 0) -> dict:
    """The figures on a seeded sample of ``texts``: unknown-token share (of the non-special tokens), the share of
    characters the normaliser changes, examples of both, and whether each passes its threshold."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) > sample:
        texts = [texts[i] for i in sorted(np.random.default_rng(seed).choice(len(texts), sample, replace=False))]
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids) - {unk}
    n_tokens = n_unk = n_chars = n_changed = n_text_chars = n_unk_chars = 0
    unk_examples: list[str] = []
    changed_examples: list[str] = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast, truncation=False)
        ids = [t for t in enc["input_ids"] if t not in special]
        n_tokens += len(ids)
        n_text_chars += _visible(text)
        if unk is not None:
            hits = [k for k, t in enumerate(enc["input_ids"]) if t == unk]
            n_unk += len(hits)
            if tokenizer.is_fast:
                spans = [enc["offset_mapping"][k] for k in hits]
                n_unk_chars += sum(_visible(text[a:b]) for a, b in spans)
                if spans and len(unk_examples) < EXAMPLES:
                    a, b = spans[0]
                    unk_examples.append(text[a:b][:40])
        lost, chars, example = _changed_chars(tokenizer, text)
        n_changed, n_chars = n_changed + lost, n_chars + chars
        if example and len(changed_examples) < EXAMPLES:
            changed_examples.append(example)
    unknown_share = n_unk / n_tokens if n_tokens else 0.0
    changed_share = n_changed / n_chars if n_chars else 0.0
    # a slow tokenizer gives no offsets: its token share stands in for the characters'
    char_share = (n_unk_chars / n_text_chars if n_text_chars else 0.0) if tokenizer.is_fast else unknown_share
    return {"texts": len(texts), "tokens": n_tokens, "unknown_share": unknown_share,
            "unknown_char_share": char_share, "normaliser_changed_share": changed_share,
            "unknown_examples": unk_examples, "changed_examples": changed_examples,
            "unknown_warn_above": UNKNOWN_WARN, "not_ready_chars_above": NOT_READY_CHARS,
            "changed_warn_above": CHANGED_WARN, "ready": char_share <= NOT_READY_CHARS,
            "ok": unknown_share <= UNKNOWN_WARN and changed_share <= CHANGED_WARN and char_share <= UNKNOWN_WARN}


def _visible(text: str) -> int:
    return sum(not c.isspace() for c in text)


def not_ready(c: dict, what: str) -> str | None:
    """The one line that stops a run before it starts (characters lost past :data:`NOT_READY_CHARS`), or None."""
    if c.get("ready", True):
        return None
    return (f"{what}: {c['unknown_char_share']:.0%} of the characters of {c['texts']} sampled texts sit inside"
            f" unknown tokens ({c['unknown_share']:.1%} of the tokens; e.g."
            f" {', '.join(map(repr, c['unknown_examples']))}): the model would never see them (not ready above"
            f" {NOT_READY_CHARS:.0%}). Use a checkpoint whose vocabulary covers these texts' script, or none: without"
            " a checkpoint the from-scratch encoder's tokenizer learns your train texts (README: your own data)")


def warnings(c: dict, what: str) -> list[str]:
    """One sentence per figure past its threshold, the not-ready one first (empty when the tokenizer reads the
    texts)."""
    out = [not_ready(c, what)] if not c.get("ready", True) else []   # it names the unknown tokens already
    if not out and (c["unknown_share"] > UNKNOWN_WARN or c.get("unknown_char_share", 0.0) > UNKNOWN_WARN):
        out.append(f"{what}: {c['unknown_share']:.1%} of the tokens of {c['texts']} sampled texts are the unknown"
                   f" token, {c.get('unknown_char_share', 0.0):.1%} of the characters (more than {UNKNOWN_WARN:.0%};"
                   f" e.g. {', '.join(map(repr, c['unknown_examples']))}): the tokenizer does not cover these texts' script — use a checkpoint whose vocabulary does")
    if c["normaliser_changed_share"] > CHANGED_WARN:
        out.append(f"{what}: the tokenizer's normaliser changes or drops {c['normaliser_changed_share']:.1%} of the"
                   f" characters (case aside; more than {CHANGED_WARN:.0%}; e.g. "
                   f"{'; '.join(c['changed_examples'])}): distinctions in the text are lost before the model sees it")
    return out
