"""Forward benchmark: flashgdn side by side with FLA, FlashQLA (and FlashInfer when installed).

Same inputs for every library, one process, medians of device-event timings
(triton.testing.do_bench). Inputs come from flashgdn.testing.make_inputs: bf16, K = V = 128,
h0 given, final state returned. Prints a table; --json writes the rows; benchmarks/plot.py
draws the PNG from that JSON.

  python benchmarks/bench_fwd.py --configs acceptance --gates decay --json out.json
  python benchmarks/bench_fwd.py --configs acceptance --check      # errors vs fp64, flashgdn and FLA

--check compares every library's o and final state with the fp64 chunked reference on the same
bf16 inputs (flashgdn.reference.chunked), reporting ||x - ref|| / ||ref||.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import torch

import flashgdn
from flashgdn.testing import make_inputs, random_seqlens, cu_from_lens

QWEN_HEADS = [(16, 64), (16, 48), (8, 32), (8, 24), (4, 16), (2, 8)]   # TP1 .. TP8
LIBS = ("flashgdn", "fla", "flashqla", "flashinfer")


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


def bench(fn, warmup_ms=100, rep_ms=500):
    import triton.testing
    return triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")


def library_fns(which, cp):
    """name -> fn(q, k, v, g, beta, h0, cu_seqlens) returning (o, final_state), for every library
    in ``which`` that imports (flashgdn with the given cp)."""
    fns = {}
    if "flashgdn" in which:
        fns["flashgdn"] = lambda q, k, v, g, b, h0, cu: flashgdn.chunk_gated_delta_rule(
            q, k, v, g, b, initial_state=h0, output_final_state=True, cu_seqlens=cu, cp=cp)
    if "fla" in which:
        try:
            os.environ["FLA_FLASH_QLA"] = "0"      # FLA would otherwise dispatch to FlashQLA
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_fn
            fns["fla"] = lambda q, k, v, g, b, h0, cu: fla_fn(q, k, v, g, b, initial_state=h0, output_final_state=True,
                                                              cu_seqlens=cu.long() if cu is not None else None)
        except Exception as e:  # noqa: BLE001
            print(f"[bench] FLA unavailable: {e}", file=sys.stderr)
    if "flashqla" in which:
        try:
            from flash_qla import chunk_gated_delta_rule as qla_fn
            fns["flashqla"] = lambda q, k, v, g, b, h0, cu: qla_fn(q, k, v, g, b, initial_state=h0,
                                                                   output_final_state=True, cu_seqlens=cu)
        except Exception as e:  # noqa: BLE001
            print(f"[bench] FlashQLA unavailable: {e}", file=sys.stderr)
    if "flashinfer" in which:
        try:
            import flashinfer  # noqa: F401
            print("[bench] FlashInfer found but not wired in (packed input, alpha = exp(g), [N,HV,V,K] state)",
                  file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass
    return fns


def make_runners(x, which, cp):
    """name -> zero-arg callable returning (o, final_state) for one forward on x."""
    args = tuple(x[n] for n in ("q", "k", "v", "g", "beta", "initial_state", "cu_seqlens"))
    return {name: (lambda fn=fn: fn(*args)) for name, fn in library_fns(which, cp).items()}


def rel(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="acceptance", choices=sorted(config_sets()))
    ap.add_argument("--libs", default="flashgdn,fla,flashqla")
    ap.add_argument("--gates", default="decay", help="flashgdn.testing gate kind (decay, slow, zero)")
    ap.add_argument("--cp", default="auto", help='flashgdn cp: "auto", "none" or an int')
    ap.add_argument("--check", action="store_true", help="also report errors vs the fp64 reference")
    ap.add_argument("--json")
    args = ap.parse_args()
    which = set(args.libs.split(","))
    cp = None if args.cp == "none" else ("auto" if args.cp == "auto" else int(args.cp))
    dev = torch.cuda.get_device_name()
    print(f"# {dev}, torch {torch.__version__}, gates={args.gates}, flashgdn cp={args.cp}; "
          "medians of do_bench (ms)", flush=True)
    rows = []
    for B, T, H, HV, lens in config_sets()[args.configs]:
        x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda",
                        cu_seqlens=cu_from_lens(lens) if lens else None, gates=args.gates, seed=0)
        row = {"config": label(B, T, H, HV, lens), "B": B, "T": T, "H": H, "HV": HV,
               "varlen": len(lens) if lens else 0}
        ref = None
        if args.check:
            from flashgdn import reference as R
            ref = R.chunked(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                            output_final_state=True, cu_seqlens=x["cu_seqlens"], dtype=torch.float64)
        for name, fn in make_runners(x, which, cp).items():
            try:
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = fn()
                    torch.cuda.synchronize()
                row[f"{name}_first_s"] = round(time.perf_counter() - t0, 3)
                if ref is not None:
                    row[f"{name}_err_o"] = rel(out[0], ref[0])
                    row[f"{name}_err_state"] = rel(out[1], ref[1])
                del out
                with torch.no_grad():
                    row[name] = round(bench(fn), 4)
            except Exception as e:  # noqa: BLE001
                print(f"[bench] {name} failed on {row['config']}: {e}", file=sys.stderr)
        rows.append(row)
        cells = "  ".join(f"{n}={row[n]:.3f}" for n in LIBS if n in row)
        if "flashqla" in row and "flashgdn" in row:
            cells += f"  (x{row['flashqla'] / row['flashgdn']:.2f} vs FlashQLA)"
        if args.check:
            cells += "  err " + " ".join(f"{n}:{row[n + '_err_o']:.1e}/{row[n + '_err_state']:.1e}"
                                         for n in LIBS if n + "_err_o" in row)
        print(f"{row['config']:<26} {cells}", flush=True)
        del x, ref
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
                       "gates": args.gates, "cp": args.cp, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
