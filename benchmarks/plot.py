"""Bar chart (PNG) of a bench_fwd.py JSON file: ms per configuration and library.

  python benchmarks/plot.py benchmarks/results/fwd_h100.json benchmarks/results/fwd_h100.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = json.load(open(sys.argv[1]))
rows = data["rows"]
libs = [n for n in ("flashgdn", "fla", "flashqla", "flashinfer") if any(n in r for r in rows)]
fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(rows)), 4.5))
w = 0.8 / len(libs)
for i, lib in enumerate(libs):
    xs = [j + i * w for j, r in enumerate(rows) if lib in r]
    ys = [r[lib] for r in rows if lib in r]
    ax.bar(xs, ys, width=w, label=lib)
ax.set_xticks([j + 0.4 - w / 2 for j in range(len(rows))])
ax.set_xticklabels([r["config"] for r in rows], rotation=30, ha="right", fontsize=8)
ax.set_ylabel("forward, ms (median)")
ax.set_title(f"GDN chunked prefill forward, {data['device']}, {data['date']} (gates: {data['gates']})")
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
