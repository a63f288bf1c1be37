"""Forward A/B helper: the whole forward's do_bench median plus GPU time per kernel (torch.profiler,
mean over 20 calls) at the four acceptance configs, one JSON line per run. Run it once per wheel,
alternating wheels in one device call, to compare two builds of flashgdn on one GPU:

  PYTHONPATH=<site of wheel A> python benchmarks/fwd_kernels.py A
  PYTHONPATH=<site of wheel B> python benchmarks/fwd_kernels.py B        # then A, B again

Writes $OUT/fwdk_TAG_GATES.json (or /tmp when OUT is unset). flashgdn only: side-by-side speed
against the anchors comes from bench_fwd.py.
"""
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fwd import bench, config_sets  # noqa: E402

import flashgdn  # noqa: E402
from flashgdn.testing import make_inputs  # noqa: E402

tag = sys.argv[1]
gates = sys.argv[2] if len(sys.argv) > 2 else "decay"
out = {}
for B, T, H, HV, _ in config_sets()["acceptance"]:
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates=gates, seed=0)
    fn = lambda: flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"],  # noqa: E731
                                                 initial_state=x["initial_state"], output_final_state=True)
    with torch.no_grad():
        fn()
        torch.cuda.synchronize()
        t = bench(fn, warmup_ms=100, rep_ms=400)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
    ks = {e.key[:40]: e.device_time_total / 1e3 / 20 for e in prof.key_averages() if e.device_time_total > 0}
    top = sorted(ks.items(), key=lambda kv: -kv[1])[:4]
    print(f"[{tag}] {B},{T},{H},{HV} {gates}: fwd {t:.4f} ms | " + " | ".join(f"{k} {v:.4f}" for k, v in top), flush=True)
    out[f"{B},{T},{H},{HV}"] = {"fwd_ms": t, "kernels_ms": ks}
dest = os.environ.get("OUT", "/tmp")
with open(os.path.join(dest, f"fwdk_{tag}_{gates}.json"), "a") as f:
    f.write(json.dumps(out) + "\n")
