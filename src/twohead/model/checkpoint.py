"""Stage-1 checkpoint directories: validate up front, load the encoder, with messages that say what is wrong.

Tokenizer and encoder loading live here together; :mod:`twohead.data.tokenization` only turns text into ids.

Accepted layouts (all local; nothing is downloaded): ``config.json`` + weights (``model.safetensors``,
``pytorch_model.bin`` or their sharded index) + tokenizer files — ``spm.model`` alone (DeBERTa-v3's
release), ``tokenizer.json``, or a WordPiece ``vocab.txt`` (BERT-style).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..config.errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def check_files(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json; this is not a Hugging Face model directory")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{path}: no weights ({' / '.join(WEIGHT_FILES[:2])}) next to config.json")
    refuse_custom_code(path)
    return path


def refuse_custom_code(path: Path) -> None:
    """A checkpoint is data: one whose config asks transformers for its own Python code (``auto_map``, a
    ``trust_remote_code`` architecture) is refused before transformers could offer to run it. Every load here also
    passes ``trust_remote_code=False``."""
    import json

    for name in ("config.json", "tokenizer_config.json"):
        f = path / name
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{f}: not valid JSON ({exc})") from None
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            refs = ", ".join(sorted(str(v) for v in _flat(cfg["auto_map"])))[:120]
            raise CheckpointError(f"{f}: the checkpoint needs its own Python code (auto_map: {refs}); twohead never"
                                  " runs code from a checkpoint — use a model of a standard transformers"
                                  " architecture (e.g. DeBERTa-v2/v3, BERT)")


def _flat(value) -> list:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [value]


def _check_safetensors(file: Path) -> None:
    """The header (8-byte little-endian length, then JSON) is readable and the file is as long as the header says:
    a copy cut short (a full disk, an interrupted download or `dvc pull`) fails here, not an hour into training."""
    import json
    import struct

    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file}: {size} bytes, too short to be a safetensors file (truncated?)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise CheckpointError(f"{file}: its header says {n} bytes of header but the file has {size} bytes:"
                                  " truncated; copy or download it again")
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise CheckpointError(f"{file}: the safetensors header is not valid JSON (a damaged file)") from exc
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    want = 8 + n + max(ends, default=0)
    if size != want:
        raise CheckpointError(f"{file}: {size} bytes but its header describes {want}:"
                              f" {'truncated' if size < want else 'trailing bytes'}; copy or download it again")


def check_weights(path: str | Path) -> None:
    """Every weight file is whole: safetensors files (and the shards an index lists) against their headers,
    ``pytorch_model.bin`` as a readable zip archive (torch.save's format)."""
    import json
    import zipfile

    path = Path(path)
    files = [path / "model.safetensors"] if (path / "model.safetensors").is_file() else []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, AttributeError) as exc:
                raise CheckpointError(f"{path / index}: not a readable weight index (no weight_map)") from exc
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise CheckpointError(f"{path / index}: lists {len(missing)} shard(s) not in the directory:"
                                      f" {missing[:3]}")
            files += [path / s for s in shards]
    if (path / "pytorch_model.bin").is_file():
        files.append(path / "pytorch_model.bin")
    for f in files:
        if f.suffix == ".safetensors":
            _check_safetensors(f)
        else:
            with open(f, "rb") as fh:
                zipped = fh.read(2) == b"PK"  # torch.save's zip format
            if zipped and not zipfile.is_zipfile(f):
                raise CheckpointError(f"{f}: a damaged or truncated zip archive; copy or download it again")
            _check_plain_weights(f, zipped)


def _check_plain_weights(f: Path, zipped: bool) -> None:
    """A ``.bin`` weight file is a pickle: it must load as plain tensors (``weights_only=True``, memory-mapped, so
    nothing is read into memory), as transformers will load it — one that needs code is refused here, in seconds."""
    import pickle

    import torch

    try:
        torch.load(f, map_location="cpu", weights_only=True, mmap=zipped)  # mmap needs torch.save's zip format
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:140] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{f}: not plain tensors ({first}); loading it would need to run code from the file,"
                              " which is refused — convert the checkpoint to model.safetensors") from None


def load_config(path: str | Path):
    from transformers import AutoConfig

    path = check_files(path)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: config.json cannot be read as a transformers config: {exc}") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise CheckpointError(
            f"{path}: model type {config.model_type!r} is an encoder-decoder; export its encoder alone")
    if not hasattr(config, "hidden_size"):
        raise CheckpointError(f"{path}: model type {config.model_type!r} has no hidden_size; not a usable encoder")
    return config


def load_encoder(checkpoint: str | Path):
    """``AutoModel.from_pretrained`` for a local directory, with a clear message for what is missing. The weights
    load in float32 whatever dtype they were saved in: transformers 5 keeps a checkpoint's own dtype by default, so
    a bf16/fp16 checkpoint (a GPU run's, or a hub model saved in half precision) would otherwise train and predict
    in half precision on any device — and meet the float32 heads with a dtype error. ``train.precision`` (autocast)
    is the one place a lower precision is chosen."""
    import torch
    from transformers import AutoModel

    config = load_config(checkpoint)
    try:
        return AutoModel.from_pretrained(str(checkpoint), config=config, trust_remote_code=False,
                                         dtype=torch.float32)
    except Exception as exc:
        raise CheckpointError(f"{checkpoint}: cannot load the encoder weights: {exc}") from exc


def validate_checkpoint(checkpoint: str | Path, max_length: int | None = None):
    """Check a checkpoint directory without loading its weights: config, weights present and whole, tokenizer
    loadable (naming a missing package), tokenizer ids within the model's vocabulary, and (given
    ``max_length``) sequences that fit its absolute position embeddings.
    Returns ``(tokenizer, summary)`` so callers need not load the tokenizer again."""
    config = load_config(checkpoint)
    check_weights(checkpoint)
    positions = getattr(config, "max_position_embeddings", None)
    absolute = getattr(config, "position_biased_input", True)  # DeBERTa-v3: relative positions only
    if max_length is not None and positions is not None and absolute and max_length > positions:
        raise CheckpointError(f"{checkpoint}: tokenize.max_length is {max_length} but the model has"
                              f" max_position_embeddings {positions}; set tokenize.max_length <= {positions}")
    tok = load_tokenizer(checkpoint)
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tok) > vocab:
        raise CheckpointError(
            f"{checkpoint}: the tokenizer has {len(tok)} tokens but config.json's vocab_size is {vocab};"
            " ids past the embedding table would crash training"
        )
    return tok, {"model_type": config.model_type, "hidden_size": config.hidden_size,
            "num_hidden_layers": getattr(config, "num_hidden_layers", None), "vocab_size": vocab,
            "tokenizer": f"{type(tok).__name__} ({'fast' if tok.is_fast else 'slow'})"}


def _missing_packages() -> list[str]:
    missing = []
    for name in ("sentencepiece", "google.protobuf"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # parent package ("google") absent
            found = False
        if not found:
            missing.append(name)
    return missing


def load_tokenizer(checkpoint: str | Path):
    """``AutoTokenizer`` for a local checkpoint directory (fast when it can be built), with clear errors.

    A DeBERTa-v3 directory that ships only ``spm.model`` needs ``sentencepiece`` *and* ``protobuf``
    to build its fast tokenizer; without them transformers fails with a misleading message, so we
    check first and name the package.
    """
    from transformers import AutoTokenizer

    path = Path(checkpoint)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    has_spm = any(path.glob("*.model"))
    has_json = (path / "tokenizer.json").is_file()
    if has_spm and not has_json:
        missing = _missing_packages()
        if missing:
            names = ", ".join("protobuf" if m == "google.protobuf" else m for m in missing)
            raise CheckpointError(
                f"{path}: the tokenizer is a SentencePiece model ({', '.join(p.name for p in path.glob('*.model'))})"
                f" without tokenizer.json; loading it needs the package(s) {names}: pip install {names}"
            )
    try:
        refuse_custom_code(path)
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except Exception as exc:  # transformers raises many types here; all mean "cannot load"
        files = sorted(p.name for p in path.iterdir())
        raise CheckpointError(f"{path}: cannot load a tokenizer from this directory ({exc}); files: {files}") from exc
    if tok.pad_token_id is None:
        raise CheckpointError(f"{path}: the tokenizer has no padding token; set pad_token in tokenizer_config.json")
    return tok
