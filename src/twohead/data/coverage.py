"""Can this checkpoint's tokenizer read these texts? Measured on a sample before any training: the share of tokens
that are the unknown token, and the share of characters the tokenizer's normaliser changes or drops beyond case
(an uncased English normaliser strips Japanese voicing marks: インタビュー → インタヒュー), with examples.

An English-vocabulary checkpoint on Japanese news passed every other check while 21% of its tokens were
``[UNK]``: the costliest silent mistake there is. ``twohead check`` and the tokenize stage warn past
:data:`UNKNOWN_WARN` / :data:`CHANGED_WARN`; the tokenize stage writes the figures to ``metrics/tokenizer.json``.
"""

from __future__ import annotations

import difflib
import unicodedata

import numpy as np

SAMPLE = 500           # texts measured (a seeded sample)
UNKNOWN_WARN = 0.01    # warn when more than 1% of the content tokens are the unknown token
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
    n_tokens = n_unk = n_chars = n_changed = 0
    unk_examples: list[str] = []
    changed_examples: list[str] = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast, truncation=False)
        ids = [t for t in enc["input_ids"] if t not in special]
        n_tokens += len(ids)
        if unk is not None:
            hits = [k for k, t in enumerate(enc["input_ids"]) if t == unk]
            n_unk += len(hits)
            if hits and len(unk_examples) < EXAMPLES and tokenizer.is_fast:
                a, b = enc["offset_mapping"][hits[0]]
                unk_examples.append(text[a:b][:40])
        lost, chars, example = _changed_chars(tokenizer, text)
        n_changed, n_chars = n_changed + lost, n_chars + chars
        if example and len(changed_examples) < EXAMPLES:
            changed_examples.append(example)
    unknown_share = n_unk / n_tokens if n_tokens else 0.0
    changed_share = n_changed / n_chars if n_chars else 0.0
    return {"texts": len(texts), "tokens": n_tokens, "unknown_share": unknown_share,
            "normaliser_changed_share": changed_share, "unknown_examples": unk_examples,
            "changed_examples": changed_examples, "unknown_warn_above": UNKNOWN_WARN,
            "changed_warn_above": CHANGED_WARN,
            "ok": unknown_share <= UNKNOWN_WARN and changed_share <= CHANGED_WARN}


def warnings(c: dict, what: str) -> list[str]:
    """One sentence per figure past its threshold (empty when the tokenizer reads the texts)."""
    out = []
    if c["unknown_share"] > UNKNOWN_WARN:
        out.append(f"{what}: {c['unknown_share']:.1%} of the tokens of {c['texts']} sampled texts are the unknown"
                   f" token (more than {UNKNOWN_WARN:.0%}; e.g. {', '.join(map(repr, c['unknown_examples']))}): the"
                   " tokenizer does not cover these texts' script — use a checkpoint whose vocabulary does")
    if c["normaliser_changed_share"] > CHANGED_WARN:
        out.append(f"{what}: the tokenizer's normaliser changes or drops {c['normaliser_changed_share']:.1%} of the"
                   f" characters (case aside; more than {CHANGED_WARN:.0%}; e.g. "
                   f"{'; '.join(c['changed_examples'])}): distinctions in the text are lost before the model sees it")
    return out
