"""The embedded demo: the demo data table (from the HuffPost sample) and the demo encoder directory.

Demo data rules (``scripts/build_demo_data.py`` applies them and the result is committed):

* one row per article; an article whose link repeats an earlier one is dropped;
* ``id`` = ``hp-`` + the 0-based line number in the source file; ``text`` = headline + " " +
  short description; ``date`` as in the source;
* articles of :data:`DECLINE_CATEGORIES` are **Decline** rows with an empty ``category``;
* every other article is a **Pick** row with its category, except a seeded :data:`CATEGORY_ONLY_SHARE`
  of them whose ``pick`` is emptied (category-only rows, as the real data has).

The demo encoder is a DeBERTa-v3-layout directory built from scratch: a SentencePiece unigram model
trained on the train split's texts (the demo's, or yours when you bring data without a checkpoint), ids
``[PAD]``=0, ``[CLS]``=1, ``[SEP]``=2, ``[UNK]``=3, ``[MASK]``=4, saved as
``spm.model`` + ``tokenizer_config.json`` (no ``tokenizer.json``, like DeBERTa-v3's own release), and a
randomly initialised ``DebertaV2Model`` with relative attention as in DeBERTa-v3, both seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config.params import DemoEncoderParams
from .data.io import atomic_path

DECLINE_CATEGORIES = ("COMEDY", "WEIRD NEWS")
CATEGORY_ONLY_SHARE = 0.15
DEMO_SEED = 20240501


def build_demo_table(source_jsonl: str | Path, seed: int = DEMO_SEED) -> pd.DataFrame:
    src = pd.read_json(source_jsonl, lines=True, dtype=False)
    src["id"] = [f"hp-{i:05d}" for i in range(len(src))]
    src = src.drop_duplicates(subset="link", keep="first").reset_index(drop=True)
    headline = src["headline"].fillna("").str.strip()
    desc = src["short_description"].fillna("").str.strip()
    text = (headline + " " + desc).str.strip()
    decline = src["category"].isin(DECLINE_CATEGORIES).to_numpy()
    rng = np.random.default_rng(seed)
    lose_pick = (~decline) & (rng.random(len(src)) < CATEGORY_ONLY_SHARE)
    pick = np.where(decline, "Decline", np.where(lose_pick, "", "Pick"))
    category = np.where(decline, "", src["category"].to_numpy())
    return pd.DataFrame({
        "id": src["id"], "text": text, "pick": pick, "category": category,
        "date": pd.to_datetime(src["date"]).dt.strftime("%Y-%m-%d"),
    })


SPECIAL_TOKENS = {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "unk_token": "[UNK]", "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}


def train_sentencepiece(texts: list[str], out_dir: Path, vocab_size: int) -> Path:
    """Train the unigram model from memory (no file paths end up inside ``spm.model``, so the same
    texts and settings give the same bytes wherever it is built)."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t.replace("\n", " ") for t in texts]), model_writer=buf,
        vocab_size=vocab_size, model_type="unigram",
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]",
        unk_id=3, unk_piece="[UNK]", user_defined_symbols=["[MASK]"], character_coverage=0.9995,
        hard_vocab_limit=False,   # a small text set gets the vocabulary it can fill instead of an error
        num_threads=1, shuffle_input_sentence=False, minloglevel=2,
    )
    path = out_dir / "spm.model"
    path.write_bytes(buf.getvalue())
    return path


def build_tokenizer(cfg: DemoEncoderParams, texts: list[str], out_dir: Path):
    """The from-scratch encoder's tokenizer, trained on ``texts`` and saved in ``out_dir`` (``spm.model`` +
    ``tokenizer_config.json``); returned loaded. ``twohead check`` builds it too, to measure it before the
    pipeline does."""
    from transformers import AutoTokenizer

    train_sentencepiece(texts, out_dir, cfg.vocab_size)
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "split_by_punct": False,
        "vocab_type": "spm", "model_max_length": cfg.max_position_embeddings, **SPECIAL_TOKENS,
    }, indent=2) + "\n", encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(out_dir), trust_remote_code=False)


def build_demo_encoder(cfg: DemoEncoderParams, texts: list[str], out_dir: str | Path) -> Path:
    """Build the from-scratch encoder directory at ``out_dir`` (atomically), its tokenizer trained on ``texts``,
    and return its path."""
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    out = Path(out_dir)
    with atomic_path(out, is_dir=True) as tmp:
        tok = build_tokenizer(cfg, texts, tmp)
        config = DebertaV2Config(
            vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=0,
            relative_attention=True, position_buckets=256, max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
            position_biased_input=False, pad_token_id=tok.pad_token_id, hidden_act="gelu",
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-7,
        )
        torch.manual_seed(cfg.seed)
        model = DebertaV2Model(config)
        model.save_pretrained(str(tmp), safe_serialization=True)
    return out
