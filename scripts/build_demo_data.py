"""Build the embedded demo table data/demo/news_demo.csv from the committed HuffPost sample.

Run once by a maintainer (the result is committed); the pipeline itself never runs it:
    python scripts/build_demo_data.py
The rules (Decline categories, the seeded category-only share) are in src/twohead/demo.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.data.io import write_csv  # noqa: E402
from twohead.demo import build_demo_table  # noqa: E402

if __name__ == "__main__":
    table = build_demo_table(ROOT / "data/raw/huffpost_sample.jsonl")
    write_csv(ROOT / "data/demo/news_demo.csv", table)
    counts = table["pick"].replace("", "(empty)").value_counts().to_dict()
    print(f"wrote data/demo/news_demo.csv: {len(table)} rows, pick values {counts},"
          f" {table['category'].replace('', None).nunique()} categories")
