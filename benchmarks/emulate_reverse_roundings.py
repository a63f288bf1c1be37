"""CPU emulation of the reverse pass's roundings (no GPU): bwd_dstates as shipped vs the fused
reverse kernel's plan (docs/perf-notes.md, Backward, "A second cut of the plan").

The state gradient's recurrence runs in fp64 with each GEMM operand rounded to bf16 where the
kernel rounds it, and is compared with the exact fp64 recurrence (flashgdn.reference's WY
factors) over every chunk of one long sequence:

  shipped   dv_new = bf16(P)^T dO + diag(kf) K dS_hi        (kf applied after the GEMM)
            dS <- exp(gl) dS + Q^T dO~ + bf16(-w)^T bf16(dv_new)
  plan_kf   dv_new = bf16(P)^T dO + bf16(diag(kf) K) dS_hi  (a Kf tile)
            dS <- exp(gl) dS + Q^T dO~ + K^T dre_w,  dre_w = bf16(-diag(E rk) bf16(Au)^T bf16(dv_new))
  plan      dv_new = (diag(s) bf16(P)^T dO + K dS_hi) / s,  s = 1 / kf  (one accumulator, kf by two
            row scales), update as plan_kf
  au        dv_new as shipped, update as plan_kf: bwd_dstates_v14 (build's au=True)

dS_hi = bf16(dS), except at the sequence's last chunk (d(final state) as given, as bwd_dstates'
hi + lo split). Prints the relative errors of dS' over all chunks, of dh0 and of dv_new.

  python benchmarks/emulate_reverse_roundings.py
"""

from __future__ import annotations

import torch

from flashgdn.reference import wy_factors
from flashgdn.testing import make_inputs


def bf(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float64)


def errors(T: int, gates: str, l2: bool, seed: int = 3) -> dict:
    x = make_inputs(1, T, 1, 1, dtype=torch.bfloat16, gates=gates, seed=seed, normalize_k=not l2)
    q, k, beta, g = (x[n][0, :, 0].double() for n in ("q", "k", "beta", "g"))
    rk = torch.ones(T, dtype=torch.float64)
    kraw = k.clone()                 # the kernels keep raw k and the norm factor rk
    if l2:
        q = q / (q.square().sum(-1, keepdim=True) + 1e-6).sqrt()
        rk = 1 / (k.square().sum(-1) + 1e-6).sqrt()
        k = k * rk[:, None]
    gen = torch.Generator().manual_seed(seed + 1)
    do = torch.randn(T, 128, dtype=torch.float64, generator=gen).to(torch.bfloat16).double()
    dht = torch.randn(128, 128, dtype=torch.float64, generator=gen)
    scale = 128 ** -0.5
    nc = T // 64
    ch = lambda t: t.view(nc, 64, *t.shape[1:])  # noqa: E731
    qc, kc, doc, gc, krc, rkc = ch(q), ch(k), ch(do), ch(g).cumsum(-1), ch(kraw), ch(rk)
    f = wy_factors(kc, ch(beta), gc)
    Au, E = f["Au"], f["E"]
    w = Au @ (E[..., None] * kc)
    P = f["G"] * (qc @ kc.transpose(-1, -2)) * scale
    kf = (gc[:, -1:] - gc).exp() * rkc          # times raw K
    egl = gc[:, -1].exp()
    out = {}
    for mode in ("exact", "shipped", "plan_kf", "plan", "au"):
        dS, dss, dvns = dht.clone(), [], []
        for j in reversed(range(nc)):
            dss.append(dS.clone())
            dsh = dS if (mode == "exact" or j == nc - 1) else bf(dS)
            Pj = P[j] if mode == "exact" else bf(P[j])
            dot = (E[j] * scale)[:, None] * doc[j]
            if mode in ("exact", "shipped", "au"):
                dvn = Pj.T @ doc[j] + kf[j][:, None] * (krc[j] @ dsh)
            elif mode == "plan_kf":
                dvn = Pj.T @ doc[j] + bf(kf[j][:, None] * krc[j]) @ dsh
            else:
                s = 1 / kf[j]
                dvn = (s[:, None] * (Pj.T @ doc[j]) + krc[j] @ dsh) / s[:, None]
            if mode == "exact":
                dS = egl[j] * dS + qc[j].T @ dot - w[j].T @ dvn
            elif mode == "shipped":
                dS = egl[j] * dS + qc[j].T @ bf(dot) + (-bf(w[j])).T @ bf(dvn)
            else:
                dre_w = bf(-(E[j] * rkc[j])[:, None] * (bf(Au[j]).T @ bf(dvn)))
                dS = egl[j] * dS + qc[j].T @ bf(dot) + krc[j].T @ dre_w
            dvns.append(dvn)
        out[mode] = (torch.stack(dss), dS, torch.stack(dvns))
    return rel_errors(out, ("shipped", "plan_kf", "plan", "au"))


def rel_errors(out: dict, modes) -> dict:
    """{mode: relative error of each output vs mode "exact"}, outputs being tuples of tensors."""
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    return {m: tuple(rel(a, b) for a, b in zip(out[m], out["exact"])) for m in modes}


def print_table(title: str, errors_fn) -> None:
    """The emulations' table: errors_fn(T, gates, l2) over the gate regimes, with and without the
    L2 norm (shared with emulate_forward_roundings.py)."""
    print(title)
    for T, gates in ((8192, "decay"), (8192, "slow"), (8192, "zero"), (1024, "steep")):
        for l2 in (False, True):
            r = errors_fn(T, gates, l2)
            cells = "   ".join(f"{m} " + " ".join(f"{e:.2e}" for e in r[m]) for m in r)
            print(f"T={T:<5d} {gates:<6s} l2={l2!s:<5s}  {cells}", flush=True)


def main():
    print_table("relative errors vs fp64: dS' (all chunks) / dh0 / dv_new", errors)


if __name__ == "__main__":
    main()
