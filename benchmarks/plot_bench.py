"""Plot ``samurai bench`` tables: seconds per frame by component, one bar per run.

    .venv/bin/samurai bench --models ... --dtypes float32 bfloat16 > bench.txt
    .venv/bin/python benchmarks/plot_bench.py bench.txt docs/benchmarks.png

Reads the markdown rows ``samurai bench`` prints (s/frame and the component shares) and draws
stacked horizontal bars; rows from several bench runs may be concatenated in one file.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COMPONENTS = ["image encoder", "memory attention", "memory encoder", "mask decoder"]
_SHARE = re.compile(r"([a-zA-Z /()+-]+?) (\d+)%")


def parse(text: str) -> list[tuple[str, float, dict[str, float]]]:
    """(label, s/frame, seconds by component) per table row."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 9 or not cells[0].startswith("sam2"):
            continue
        model, dtype, objects, threads, sec = cells[:5]
        seconds = float(sec)
        shares = {name.strip(", "): int(p) / 100 for name, p in _SHARE.findall(cells[8])}
        parts = {c: shares.get(c, 0.0) * seconds for c in COMPONENTS}
        parts["other"] = max(0.0, seconds - sum(parts.values()))
        label = f"{model.removeprefix('sam2.1_hiera_')} {dtype} {objects} obj {threads} thr"
        rows.append((label, seconds, parts))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    rows = parse(args.tables.read_text())
    if not rows:
        raise SystemExit(f"{args.tables}: no samurai bench rows found")
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    labels = [r[0] for r in rows]
    left = [0.0] * len(rows)
    for comp in [*COMPONENTS, "other"]:
        widths = [r[2][comp] for r in rows]
        ax.barh(labels, widths, left=left, label=comp)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, (_, sec, _) in enumerate(rows):
        ax.text(sec, y, f" {sec:.2f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per frame (1024 px unless labelled)")
    ax.set_xlim(0, max(r[1] for r in rows) * 1.12)  # room for the value labels
    # above the bars, so that no bar hides under it
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
