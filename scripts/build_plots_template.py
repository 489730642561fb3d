"""Build ``.dvc/plots/offline.html``: DVC's plots page with the Vega libraries inlined, so `dvc plots show` /
`dvc plots diff` render without the internet (DVC's own page loads them from a CDN and is blank offline).

    mkdir -p /tmp/vega && cd /tmp/vega && npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    python scripts/build_plots_template.py /tmp/vega

The versions are the ones DVC's renderer (dvc-render) loads from the CDN. `.dvc/config` points DVC at the file
(``plots.html_template``, relative to ``.dvc``). The libraries are BSD-3-Clause (the Vega project, University of
Washington Interactive Data Lab); their notices are kept at the top of each file.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

LIBS = [("vega-5.20.2.tgz", "package/build/vega.min.js"),
        ("vega-lite-5.2.0.tgz", "package/build/vega-lite.min.js"),
        ("vega-embed-6.18.2.tgz", "package/build/vega-embed.min.js")]
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline: vega 5.20.2, vega-lite 5.2.0, vega-embed 6.18.2 inlined; BSD-3-Clause)</title>
%s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(folder: str) -> None:
    scripts = []
    for tgz, member in LIBS:
        with tarfile.open(Path(folder) / tgz) as tar:
            js = tar.extractfile(member).read().decode("utf-8")
        if "</script" in js or "{plot_divs}" in js or "{refresh_tag}" in js:
            raise SystemExit(f"{tgz}: cannot be inlined safely")
        scripts.append(f"    <script>\n{js}\n    </script>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(PAGE % "\n".join(scripts), encoding="utf-8")
    print(f"{OUT}: {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
