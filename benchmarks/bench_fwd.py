"""Forward benchmark: flashgdn side by side with FLA, FlashQLA and FlashInfer (when installed).

Medians of device-event timings (triton.testing.do_bench), same inputs for every library, in
one process. Inputs come from flashgdn.testing.make_inputs (bf16, K = V = 128, h0 given,
final state returned). Prints a table, writes JSON (and a PNG with --plot).

  python benchmarks/bench_fwd.py --configs acceptance --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

import flashgdn
from flashgdn.testing import make_inputs, random_seqlens, cu_from_lens

QWEN_HEADS = [(16, 64), (16, 48), (8, 32), (8, 24), (4, 16), (2, 8)]   # TP1 .. TP8


def config_sets():
    acceptance = [(1, 8192, 16, 64, None), (1, 32768, 2, 8, None), (1, 32768, 4, 16, None), (8, 4096, 8, 32, None)]
    full = [(1, T, H, HV, None) for (H, HV) in QWEN_HEADS for T in (4096, 8192, 32768, 131072)]
    full += [(8, 4096, 8, 32, None), (8, 8192, 16, 64, None)]
    lens = random_seqlens(65536, 16, torch.Generator().manual_seed(0), min_len=1)
    full += [(1, 65536, 16, 64, lens), (1, 65536, 4, 16, lens)]
    return {"acceptance": acceptance, "full": full, "smoke": [(1, 8192, 16, 64, None), (1, 32768, 2, 8, None)]}


def label(B, T, H, HV, lens):
    base = f"B{B} T{T // 1024}k H{H} HV{HV}"
    return base + (f" varlen{len(lens)}" if lens else "")


def bench(fn, warmup_ms=50, rep_ms=300):
    import triton.testing
    return triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")


def make_runners(x, which):
    """name -> zero-arg callable running one forward on x."""
    q, k, v, g, beta, h0, cu = (x[n] for n in ("q", "k", "v", "g", "beta", "initial_state", "cu_seqlens"))
    runners = {}
    if "flashgdn" in which:
        runners["flashgdn"] = lambda: flashgdn.chunk_gated_delta_rule(
            q, k, v, g, beta, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    if "fla" in which:
        try:
            os.environ.setdefault("FLA_FLASH_QLA", "0")
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_fwd
            runners["fla"] = lambda: fla_fwd(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                             cu_seqlens=cu.long() if cu is not None else None)
        except Exception as e:  # noqa: BLE001
            print(f"[bench] FLA unavailable: {e}", file=sys.stderr)
    if "flashqla" in which:
        try:
            from flash_qla import chunk_gated_delta_rule as qla_fwd
            runners["flashqla"] = lambda: qla_fwd(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                  cu_seqlens=cu)
        except Exception as e:  # noqa: BLE001
            print(f"[bench] FlashQLA unavailable: {e}", file=sys.stderr)
    return runners


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="acceptance", choices=sorted(config_sets()))
    ap.add_argument("--libs", default="flashgdn,fla,flashqla")
    ap.add_argument("--gates", default="slow", help="flashgdn.testing gate kind (decay, slow, zero)")
    ap.add_argument("--json")
    args = ap.parse_args()
    which = set(args.libs.split(","))
    rows = []
    dev = torch.cuda.get_device_name()
    print(f"# {dev}, torch {torch.__version__}, gates={args.gates}")
    for B, T, H, HV, lens in config_sets()[args.configs]:
        x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu_from_lens(lens) if lens else None,
                        gates=args.gates, seed=0)
        row = {"config": label(B, T, H, HV, lens)}
        for name, fn in make_runners(x, which).items():
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
                torch.cuda.synchronize()
            row[f"{name}_first_s"] = time.perf_counter() - t0
            with torch.no_grad():
                row[name] = bench(fn)
        rows.append(row)
        cells = "  ".join(f"{n}={row[n]:.3f}ms" for n in ("flashgdn", "fla", "flashqla") if n in row)
        print(f"{row['config']:<28} {cells}", flush=True)
        del x
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "torch": torch.__version__, "gates": args.gates, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
