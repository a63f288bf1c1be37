"""Training-step benchmark (forward + backward): flashgdn side by side with FLA and FlashQLA.

Same inputs for every library, one process, medians of device-event timings (do_bench). One
step = forward with every input requiring grad (q, k, v, g, beta, h0) + backward of
(o, final state) with random do and d(final state). Also reports each library's peak extra
device memory for one step (torch.cuda.max_memory_allocated over the inputs' footprint).

  python benchmarks/bench_fwdbwd.py --configs acceptance --json out.json
  python benchmarks/bench_fwdbwd.py --only 0 --only 1 --json part1.json
  python benchmarks/bench_fwdbwd.py --libs flashgdn,flashgdn_lean   # save_wy_factors True / False

FLA 0.6.0 refuses its backward on Hopper with Triton < 3.7.1 unless tilelang is importable
(then it uses its TileLang kernels): install the FlashQLA anchor set (which brings tilelang)
to time it; FLA_FLASH_QLA=0 is set here so FLA does not hand the call to FlashQLA.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch

from flashgdn.testing import make_inputs, cu_from_lens

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fwd import bench, config_sets, label, library_fns  # noqa: E402

import flashgdn  # noqa: E402

# flashgdn_lean: flashgdn with save_wy_factors=False (only the inputs kept for the backward)
LIBS = ("flashgdn", "flashgdn_lean", "fla", "flashqla")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="acceptance", choices=sorted(config_sets()))
    ap.add_argument("--libs", default="flashgdn,fla,flashqla")
    ap.add_argument("--gates", default="decay")
    ap.add_argument("--cp", default="auto")
    ap.add_argument("--json")
    ap.add_argument("--only", type=int, action="append",
                    help="run only this index of the config set (repeatable): FlashQLA's first backward "
                         "call of a shape JIT-compiles for minutes, so long sets may need several runs")
    args = ap.parse_args()
    cp = None if args.cp == "none" else ("auto" if args.cp == "auto" else int(args.cp))
    dev = torch.cuda.get_device_name()
    print(f"# {dev}, torch {torch.__version__}, gates={args.gates}; fwd+bwd step, medians of do_bench (ms); "
          "peak extra memory (GB)", flush=True)
    rows = []
    for i, (B, T, H, HV, lens) in enumerate(config_sets()[args.configs]):
        if args.only and i not in args.only:
            continue
        x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda",
                        cu_seqlens=cu_from_lens(lens) if lens else None, gates=args.gates, seed=0)
        leaves = [x[n].detach().clone().requires_grad_(True) for n in ("q", "k", "v", "g", "beta", "initial_state")]
        N = x["initial_state"].shape[0]
        do = torch.randn_like(x["v"])
        dht = torch.randn(N, HV, 128, 128, device="cuda")
        row = {"config": label(B, T, H, HV, lens), "B": B, "T": T, "H": H, "HV": HV}
        fns = library_fns(set(args.libs.split(",")) & set(LIBS), cp)
        if "flashgdn_lean" in args.libs.split(","):
            fns["flashgdn_lean"] = lambda q, k, v, g, b, h0, cu: flashgdn.chunk_gated_delta_rule(
                q, k, v, g, b, initial_state=h0, output_final_state=True, cu_seqlens=cu, cp=cp, save_wy_factors=False)
        for name, fn in fns.items():
            def step():
                for t in leaves:
                    t.grad = None
                o, ht = fn(*leaves, x["cu_seqlens"])
                torch.autograd.backward([o, ht], [do, dht])
            try:
                step()
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                step()
                torch.cuda.synchronize()
                row[f"{name}_peak_gb"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
                row[name] = round(bench(step), 4)
            except Exception as e:  # noqa: BLE001
                print(f"[bench] {name} failed on {row['config']}: {str(e)[:300]}", file=sys.stderr)
        rows.append(row)
        cells = "  ".join(f"{n}={row[n]:.3f} ({row[n + '_peak_gb']:.2f} GB)" for n in LIBS if n in row)
        if "flashqla" in row and "flashgdn" in row:
            cells += f"  (x{row['flashqla'] / row['flashgdn']:.2f} vs FlashQLA)"
        print(f"{row['config']:<26} {cells}", flush=True)
        del x, leaves, do, dht
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
                       "gates": args.gates, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
