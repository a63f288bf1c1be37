"""Refit the CP cost model (python/flashgdn/cp.py) to forward timings at forced splits.

For each shape below (all in the regime where the planner searches: 2 * B * HV < SMs, plus one at
the boundary) and each forced split cp = n, time the forward (do_bench median) and fit

    t = offset[shape] + CHUNK_US * chunk_waves + CHUNK_US * WARMUP_CHUNKS * split_waves
        + SEGMENT_US * ctas_per_sm

by least squares, with the regressors from flashgdn.cp.model_terms (the planner's own model) and
one free offset per shape (chunk_prep and everything else the split does not change). Prints the
coefficients, measured against fitted times, and the split "auto" picks per shape with the
shipped and the fitted coefficients. Timings are of whatever kernel the process launches
(the default fused_fwd3, v13; FLASHGDN_FUSED_FWD_3WG=0 for v11).

  python benchmarks/fit_cp_model.py --json cp_fit.json         # on the GPU
  python benchmarks/fit_cp_model.py --from cp_fit.json         # refit a saved run, no GPU needed
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import torch

from flashgdn import cp as cp_plan

# (B, T, H, HV): 16-64 CTAs unsplit on 132 SMs, one sequence or two; (1,8k,16,64) has 128
SHAPES = [(1, 32768, 2, 8), (1, 65536, 2, 8), (1, 16384, 4, 16), (1, 32768, 4, 16), (2, 16384, 2, 8),
          (1, 8192, 8, 32), (1, 8192, 16, 64)]
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
COEFFS = ("CHUNK_US", "WARMUP_CHUNKS", "SEGMENT_US")


def shape_of(row):
    return row["B"], row["T"], row["H"], row["HV"]


def chunks_of(row):
    return [(row["T"] + 63) // 64] * row["B"]


def terms(row, sms):
    chunks = chunks_of(row)
    return cp_plan.model_terms(chunks, row["HV"], row["seg"] or max(chunks), sms)


def fit(rows, sms):
    """Least-squares coefficients {CHUNK_US, WARMUP_CHUNKS, SEGMENT_US} and the fitted time of
    each row (us)."""
    shapes = sorted({shape_of(r) for r in rows})
    X = [list(terms(r, sms)) + [float(shape_of(r) == s) for s in shapes] for r in rows]
    X = torch.tensor(X, dtype=torch.float64)
    y = torch.tensor([r["us"] for r in rows], dtype=torch.float64)
    sol = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    a, b, c = (float(v) for v in sol[:3])
    return {"CHUNK_US": a, "WARMUP_CHUNKS": b / a, "SEGMENT_US": c}, (X @ sol).tolist()


@contextlib.contextmanager
def coefficients(values):
    """The planner with other coefficients, for comparing the splits it picks."""
    old = {k: getattr(cp_plan, k) for k in COEFFS}
    try:
        for k in COEFFS:
            setattr(cp_plan, k, values[k])
        cp_plan._plan.cache_clear()
        yield
    finally:
        for k in COEFFS:
            setattr(cp_plan, k, old[k])
        cp_plan._plan.cache_clear()


def measure(sms, gates):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_fwd import bench
    import flashgdn
    from flashgdn.testing import make_inputs
    rows = []
    for B, T, H, HV in SHAPES:
        x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates=gates, seed=0)
        seen = set()
        for n in SPLITS:
            seg = cp_plan.plan([(T + 63) // 64] * B, HV, n, sms)
            if seg in seen or (seg and seg < cp_plan.MIN_SEGMENT_CHUNKS // 2):
                continue
            seen.add(seg)
            fn = lambda n=n: flashgdn.chunk_gated_delta_rule(  # noqa: E731
                x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                output_final_state=True, cp=n)
            rows.append({"B": B, "T": T, "H": H, "HV": HV, "cp": n, "seg": seg, "us": bench(fn) * 1e3})
            print(f"B{B} T{T // 1024}k H{H} HV{HV} cp={n:<3d} seg={seg:<4d} {rows[-1]['us']:8.1f} us", flush=True)
        del x
        torch.cuda.empty_cache()
    return rows


def report(rows, sms):
    new, fitted = fit(rows, sms)
    old = {k: getattr(cp_plan, k) for k in COEFFS}
    print("coefficient       shipped    fitted")
    for k in COEFFS:
        print(f"{k:<16s} {old[k]:8.3f}  {new[k]:8.3f}")
    print("\nshape                  cp   seg  measured   fitted (us)")
    for r, f in zip(rows, fitted):
        print(f"B{r['B']} T{r['T'] // 1024}k H{r['H']} HV{r['HV']:<4d} {r['cp']:4d} {r['seg']:5d} {r['us']:9.1f} {f:8.1f}")
    print("\nshape                 auto split (chunks/segment): shipped -> fitted; measured best")
    for shape in sorted({shape_of(r) for r in rows}):
        mine = [r for r in rows if shape_of(r) == shape]
        chunks = chunks_of(mine[0])
        picks = []
        for values in (old, new):
            with coefficients(values):
                picks.append(cp_plan.plan(chunks, shape[3], "auto", sms))
        best = min(mine, key=lambda r: r["us"])
        print(f"B{shape[0]} T{shape[1] // 1024}k H{shape[2]} HV{shape[3]:<4d}   {picks[0]} -> {picks[1]};"
              f" best measured seg={best['seg']} ({best['us']:.1f} us)")
    return new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the timings (and device) here")
    ap.add_argument("--from", dest="src", help="refit timings saved by --json (no GPU needed)")
    ap.add_argument("--gates", default="decay")
    args = ap.parse_args()
    if args.src:
        with open(args.src) as f:
            saved = json.load(f)
        rows, sms = saved["rows"], saved["sms"]
        print(f"# {saved['device']}, {saved.get('kernel', '')}, gates={saved['gates']}")
    else:
        sms = cp_plan.sm_count(torch.cuda.current_device())
        kernel = "fused_fwd" if os.environ.get("FLASHGDN_FUSED_FWD_3WG") == "0" else "fused_fwd3"
        print(f"# {torch.cuda.get_device_name()}, {sms} SMs, {kernel}, gates={args.gates}", flush=True)
        rows = measure(sms, args.gates)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": torch.cuda.get_device_name(), "sms": sms, "kernel": kernel,
                           "gates": args.gates, "rows": rows}, f, indent=1)
    report(rows, sms)


if __name__ == "__main__":
    main()
