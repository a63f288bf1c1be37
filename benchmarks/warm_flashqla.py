"""JIT warm-up for the FlashQLA anchor: one call of its forward (and, with --bwd, one training
step) on one acceptance config, so that the side-by-side benchmarks later in the same device call
time compiled kernels, not TileLang's 30-110 s first-call compilation. Run one process per config
in the background, on the CPU cores, while flashgdn's own tests use the GPU:

  for i in 0 1 2 3; do PYTHONPATH=<flashgdn site>:<anchor site> python benchmarks/warm_flashqla.py $i & done

Prints "warm <index> <seconds>" (the compile time, a number worth keeping: it is the JIT cost
flashgdn's AOT build removes).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fwd import config_sets, library_fns  # noqa: E402

from flashgdn.testing import make_inputs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("index", type=int, help="index into the acceptance config set")
    ap.add_argument("--bwd", action="store_true", help="also warm the backward (a training step)")
    args = ap.parse_args()
    # the benchmarks' own FlashQLA call (same arguments, so the same JIT cache entries)
    qla = library_fns({"flashqla"}, None)["flashqla"]
    B, T, H, HV, _ = config_sets()["acceptance"][args.index]
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates="decay", seed=0)
    names = ("q", "k", "v", "g", "beta", "initial_state")
    t0 = time.time()
    with torch.no_grad():
        qla(*(x[n] for n in names), x["cu_seqlens"])
    torch.cuda.synchronize()
    t_fwd = time.time() - t0
    msg = f"warm {args.index} fwd {t_fwd:.1f} s"
    if args.bwd:
        leaves = [x[n].detach().clone().requires_grad_(True) for n in names]
        t0 = time.time()
        o, ht = qla(*leaves, x["cu_seqlens"])
        torch.autograd.backward([o, ht], [torch.randn_like(o), torch.randn_like(ht)])
        torch.cuda.synchronize()
        msg += f", step {time.time() - t0:.1f} s"
    print(msg, flush=True)


if __name__ == "__main__":
    main()
