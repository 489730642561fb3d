"""`twohead speed` on this machine for the demo encoder and a larger random DeBERTa-v2 (the 4-layer/256-hidden
encoder of bench_trainer.py), written to benchmarks/results/.

    python benchmarks/bench_speed.py [--seconds 120] [--encoders demo 4L256H] [--out benchmarks/results]

Run after `dvc repro tokenize` (the demo's tokenized rows; the larger encoder shares the demo's tokenizer).
Each encoder runs in its own folder under runs/speed/ with a copy of params.yaml pointing
model.stage1_checkpoint at it; nothing of the project's pipeline is touched. A shape like DeBERTa-v3-base's
(--encoders base: 12 layers, 768 hidden, vocab 128,100) is for a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"4L256H": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
          "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                       vocab_size=128100)}


def build_encoder(name: str, folder: Path) -> Path:
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

    out = folder / f"encoder_{name}"
    if (out / "config.json").is_file():
        return out
    cfg = DebertaV2Config.from_pretrained(str(ROOT / "models" / "demo_encoder"))
    for k, v in SHAPES[name].items():
        setattr(cfg, k, v)
    import torch

    torch.manual_seed(0)
    DebertaV2Model(cfg).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(ROOT / "models" / "demo_encoder")).save_pretrained(str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--encoders", nargs="+", default=["demo", "4L256H"], choices=["demo", *SHAPES])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    for name in args.encoders:
        folder = ROOT / "runs" / "speed" / name
        folder.mkdir(parents=True, exist_ok=True)
        raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
        raw["model"]["stage1_checkpoint"] = str(ROOT / "models" / "stage1") if name == "demo" \
            else str(build_encoder(name, folder))
        (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
        for sub in ("data",):
            link = folder / sub
            if not link.exists():
                link.symlink_to(ROOT / sub)
        (folder / "models").mkdir(exist_ok=True)
        json_out = args.out / f"speed_{args.tag}_{name}.json"
        subprocess.run([sys.executable, "-m", "twohead.cli", "speed", "--seconds", str(args.seconds),
                        "--json", str(json_out), "--plot", str(args.out / f"speed_{args.tag}_{name}.png")],
                       cwd=folder, check=True)
        r = json.loads(json_out.read_text())
        print(f"{name}: {r['recommendation']['safe']}")


if __name__ == "__main__":
    main()
