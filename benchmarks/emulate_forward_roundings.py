"""CPU emulation of the forward's roundings (no GPU): fused_fwd3 (v13) vs fused_fwd_v14's
reformulations of the v~ GEMM (docs/perf-notes.md, fused_fwd v14).

The chunk recurrence runs in fp64 with each GEMM operand rounded to bf16 where the kernel rounds
it, and is compared with the exact fp64 chunked forward (flashgdn.reference's WY factors):

  shipped  v_new = Au V + bf16(Aw K) bf16(S)       (v13: -w~ = Aw K formed a chunk ahead, bf16 tile)
  xks      v_new = Au V + Aw bf16(K bf16(S))       (Y = (K S)^T on the state's warpgroup, then Aw)
  xks_au   v_new = Au V + Au bf16(diag(f) K bf16(S)),  Aw = Au diag(f), f = -exp(gc) rk   (v14)

both with Au, Aw rounded to bf16 (chunk_prep's tiles), S' = exp(gl) S + K^T bf16(diag(dec) v_new)
and o = og (Q bf16(S)) + bf16(P) bf16(v_new). Prints the relative errors of o and of the final
state against the exact forward.

  python benchmarks/emulate_forward_roundings.py
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulate_reverse_roundings import bf, print_table, rel_errors  # noqa: E402

from flashgdn.reference import wy_factors  # noqa: E402
from flashgdn.testing import make_inputs  # noqa: E402


def errors(T: int, gates: str, l2: bool, seed: int = 3) -> dict:
    x = make_inputs(1, T, 1, 1, dtype=torch.bfloat16, gates=gates, seed=seed, normalize_k=not l2)
    q, k, v, beta, g = (x[n][0, :, 0].double() for n in ("q", "k", "v", "beta", "g"))
    h0 = x["initial_state"][0, 0].double()
    rk = torch.ones(T, dtype=torch.float64)
    rq = torch.ones(T, dtype=torch.float64)
    kraw, qraw = k.clone(), q.clone()   # the kernels keep raw q, k and the norm factors
    if l2:
        rq = 1 / (q.square().sum(-1) + 1e-6).sqrt()
        rk = 1 / (k.square().sum(-1) + 1e-6).sqrt()
        q, k = q * rq[:, None], k * rk[:, None]
    scale = 128 ** -0.5
    nc = T // 64
    ch = lambda t: t.view(nc, 64, *t.shape[1:])  # noqa: E731
    qc, kc, vc, gc, krc, qrc, rkc, rqc = ch(q), ch(k), ch(v), ch(g).cumsum(-1), ch(kraw), ch(qraw), ch(rk), ch(rq)
    f = wy_factors(kc, ch(beta), gc)
    Au, E, G = f["Au"], f["E"], f["G"]
    Aw = -Au * (E * rkc)[:, None, :]             # times raw K: w = -Aw K
    KKr = qrc @ krc.transpose(-1, -2)
    P = G * KKr * (rqc * scale)[:, :, None] * rkc[:, None, :]
    dec = (gc[:, -1:] - gc).exp() * rkc           # times raw K
    og = E * rqc * scale                           # times raw Q
    egl = gc[:, -1].exp()
    out = {}
    fcol = -(E * rkc)                             # Aw = Au diag(fcol)
    for mode in ("exact", "shipped", "xks", "xks_au"):
        S, os_ = h0.clone(), []
        for j in range(nc):
            if mode == "exact":
                vn = Au[j] @ vc[j] + Aw[j] @ (krc[j] @ S)
                os_.append(og[j][:, None] * (qrc[j] @ S) + P[j] @ vn)
                S = egl[j] * S + krc[j].T @ (dec[j][:, None] * vn)
                continue
            Sb = bf(S)
            u = bf(Au[j]) @ vc[j]
            if mode == "shipped":
                vn = u + bf(bf(Aw[j]) @ krc[j]) @ Sb
            elif mode == "xks":
                vn = u + bf(Aw[j]) @ bf(krc[j] @ Sb)
            else:
                vn = u + bf(Au[j]) @ bf(fcol[j][:, None] * (krc[j] @ Sb))
            os_.append(og[j][:, None] * (qrc[j] @ Sb) + bf(P[j]) @ bf(vn))
            S = egl[j] * S + krc[j].T @ bf(dec[j][:, None] * vn)
        out[mode] = (torch.cat(os_), S)
    return rel_errors(out, ("shipped", "xks", "xks_au"))


def main():
    print_table("relative errors vs fp64: o / final state", errors)


if __name__ == "__main__":
    main()
