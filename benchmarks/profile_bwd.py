"""Where the GPU backward's time goes, stage by stage (flashgdn only; medians of do_bench, ms).

  python benchmarks/profile_bwd.py            # the four acceptance configs
  python benchmarks/profile_bwd.py --kernels  # + GPU time per kernel (torch.profiler)
"""

from __future__ import annotations

import os
import sys

import torch

import flashgdn
from flashgdn import backward as BW
from flashgdn._layout import seq_layout
from flashgdn.testing import make_inputs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fwd import bench, config_sets, label  # noqa: E402


def kernel_table(step, top=12):
    """GPU time per kernel name over one call of ``step`` (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:top]
    total = sum(e.device_time_total for e in prof.key_averages())
    print(f"    total GPU time {total / 1e3:.3f} ms; largest kernels:")
    for e in rows:
        print(f"    {e.device_time_total / 1e3:8.3f} ms  x{e.count:<4d} {e.key[:90]}")


def stage_inputs(B, T, H, HV):
    """Inputs of the backward's stages for one config (bf16, seed 0, h0 given): the forward's
    ``x`` (make_inputs) and the token-packed qf, kf, vf, gf, bf (fp32 beta), a random do, a
    random d(final state) ``dht`` and the layout ``lay`` that sequential_stages / chunk_grads take."""
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", seed=0)
    Ttot = B * T
    f = lambda t: t.reshape((Ttot,) + tuple(t.shape[2:])).contiguous()  # noqa: E731
    qf, kf, vf, gf = (f(x[n]) for n in ("q", "k", "v", "g"))
    return dict(x=x, qf=qf, kf=kf, vf=vf, gf=gf, bf=f(x["beta"]).float().contiguous(), do=torch.randn_like(vf),
                dht=torch.randn(B, HV, 128, 128, device="cuda"), lay=seq_layout(B, T, None, x["q"].device))


def main():
    per_kernel = "--kernels" in sys.argv
    print(f"# {torch.cuda.get_device_name()}: flashgdn backward stages, medians (ms)")
    for B, T, H, HV, lens in config_sets()["acceptance"]:
        si = stage_inputs(B, T, H, HV)
        x = si["x"]
        q, k, v, g, beta, h0 = (x[n] for n in ("q", "k", "v", "g", "beta", "initial_state"))
        qf, kf, vf, gf, bf, do, dht, lay = (si[n] for n in ("qf", "kf", "vf", "gf", "bf", "do", "dht", "lay"))
        fwd = lambda: flashgdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0,  # noqa: E731
                                                      output_final_state=True)
        seq = lambda: BW.sequential_stages(qf, kf, vf, gf, bf, do, 128 ** -0.5, h0, dht, None, True,  # noqa: E731
                                           lay, H, HV)
        st = seq()
        local = lambda: BW.chunk_grads(qf, kf, vf, bf, do, st, lay, H, HV, 128 ** -0.5, gva_sum=True)  # noqa: E731
        with torch.no_grad():
            t_fwd, t_seq, t_loc = bench(fwd), bench(seq), bench(local)
        print(f"{label(B, T, H, HV, None):<22} forward {t_fwd:.3f}  chunk_prep+state pass (fused_fwd)+bwd_dstates {t_seq:.3f}  "
              f"chunk grads (bwd_local) {t_loc:.3f}", flush=True)
        if per_kernel:
            kernel_table(lambda: (seq(), local()))
        del x, si, st
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
