"""Per-phase timeline of bwd_local from a stamped scratch wheel (build_tools/stamp_bwd_local.py):
medians over the chunks of value head 0 of the cycles at each stamp, and the step from the
previous one. Runs one backward's chunk gradients at (1,8k,16,64) unless --config B,T,H,HV.

  FLASHGDN_STAMP_LEGEND=legend.json python benchmarks/phase_timeline.py
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from flashgdn import backward as BW

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profile_bwd import stage_inputs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="1,8192,16,64")
    a = ap.parse_args()
    B, T, H, HV = (int(x) for x in a.config.split(","))
    legend = json.load(open(os.environ["FLASHGDN_STAMP_LEGEND"]))
    si = stage_inputs(B, T, H, HV)
    qf, kf, vf, gf, bf, do, dht, lay = (si[n] for n in ("qf", "kf", "vf", "gf", "bf", "do", "dht", "lay"))
    h0 = si["x"]["initial_state"]
    st = BW.sequential_stages(qf, kf, vf, gf, bf, do, 128 ** -0.5, h0, dht, None, True, lay, H, HV)
    for _ in range(3):   # warm: the last run's stamps are read
        out = BW.chunk_grads(qf, kf, vf, bf, do, st, lay, H, HV, 128 ** -0.5, gva_sum=HV != H)
    torch.cuda.synchronize()
    stamps = out[4][:, 0].view(-1, 64).double().cpu().numpy()[:, 1:len(legend) + 1]
    med = np.median(stamps, axis=0)
    print(f"# {torch.cuda.get_device_name()} ({B},{T},{H},{HV}): cycles since CTA start, median of "
          f"{stamps.shape[0]} chunks (thread 0 of value head 0)")
    prev = 0.0
    for (sid, line, text), m in zip(legend, med):
        print(f"{sid:3d}  L{line:<5d} {m:8.0f}  +{m - prev:6.0f}  {text}")
        prev = m


if __name__ == "__main__":
    main()
