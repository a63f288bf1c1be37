"""The staged chunked backward (flashgdn.reference_bwd) vs autograd through the token-by-token
recurrence, in fp64 on the CPU: the algebra every backward kernel follows."""

import pytest
import torch

from flashgdn import reference as R, reference_bwd as RB
from flashgdn.testing import make_inputs, cu_from_lens

# B, T, H, HV, varlen lengths, h0, d(final state), gates
CASES = [
    (1, 1, 1, 1, None, True, True, "decay"),
    (1, 63, 1, 1, None, True, False, "decay"),
    (2, 64, 2, 2, None, True, True, "decay"),
    (1, 65, 1, 4, None, False, False, "slow"),
    (1, 130, 1, 2, None, True, True, "zero"),
    (1, 200, 2, 4, [1, 0, 69, 130], True, True, "slow"),
    (1, 200, 1, 2, [0, 130, 0, 70], False, True, "decay"),
]


def autograd_reference(x, do, dht, scale):
    leaves = [x[n].clone().requires_grad_(True) for n in ("q", "k", "v", "g", "beta")]
    h0 = x["initial_state"].clone().requires_grad_(True) if x["initial_state"] is not None else None
    o, ht = R.naive_recurrence(*leaves, scale=scale, initial_state=h0, output_final_state=True,
                               cu_seqlens=x["cu_seqlens"])
    loss = (o * do).sum() + ((ht * dht).sum() if dht is not None else 0)
    return torch.autograd.grad(loss, leaves + ([h0] if h0 is not None else []))


@pytest.mark.parametrize("B,T,H,HV,lens,h0,with_dht,gates", CASES)
def test_staged_backward_matches_autograd(B, T, H, HV, lens, h0, with_dht, gates):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, K=16, V=8, dtype=torch.float64, cu_seqlens=cu, with_h0=h0, gates=gates)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 8, dtype=torch.float64)
    dht = torch.randn(N, HV, 16, 8, dtype=torch.float64) if with_dht else None
    ref = autograd_reference(x, do, dht, 0.3)
    got = RB.backward(x["q"], x["k"], x["v"], x["g"], x["beta"], do, scale=0.3, initial_state=x["initial_state"],
                      dht=dht, cu_seqlens=x["cu_seqlens"])
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), got, ref):
        err = ((a - b).norm() / b.norm().clamp_min(1e-300)).item()
        assert err < 1e-9, (name, err)


@pytest.mark.parametrize("B,T,H,HV,lens", [(2, 130, 1, 2, None), (1, 0, 2, 4, [1, 0, 130, 64])])
def test_chunk_v_new_on_the_pass_states(B, T, H, HV, lens):
    """chunk_v_new (v_new for given states, what the stage tests hand the local stage) on
    chunk_states' own states reproduces chunk_states' v_new."""
    cu = cu_from_lens(lens) if lens else None
    T = sum(lens) if lens else T
    x = make_inputs(B, T, H, HV, dtype=torch.float32, cu_seqlens=cu)
    flat = lambda t: t.reshape((B * T,) + tuple(t.shape[2:]))  # noqa: E731
    k, v, g, beta = (flat(x[n]) for n in ("k", "v", "g", "beta"))
    idx = RB.chunk_index(B, T, x["cu_seqlens"], "cpu")
    hs, vn = RB.chunk_states(k, v, g, beta, idx, x["initial_state"])
    torch.testing.assert_close(RB.chunk_v_new(k, v, g, beta, hs, idx), vn, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gates", ["decay", "steep"])
def test_fused_plan_identities(gates):
    """The reformulations the fused reverse kernel's plan rests on (docs/perf-notes.md, Backward,
    "A second cut of the plan"), exact in fp64 on one chunk: (a) the state gradient's w term from
    dR = Au^T dv_new: -w^T dv_new = K^T dre with dre = -diag(E) dR; (b) dgc's w term
    (E K) . (Au^T dw) = rowsum(K * (dre S^T)), dw = -dv_new S^T; (c) dv_new = P^T dO + diag(kf) K dS'
    through one accumulator and two row scales s = 1 / kf."""
    x = make_inputs(1, 64, 1, 1, K=16, V=8, dtype=torch.float64, gates=gates)
    kc, gc, bc, qc = x["k"][0, :, 0], x["g"][0, :, 0].cumsum(0), x["beta"][0, :, 0], x["q"][0, :, 0]
    f = R.wy_factors(kc, bc, gc)
    Au, E, G = f["Au"], f["E"], f["G"]
    S, dS1, dO = (torch.randn(*s, dtype=torch.float64) for s in ((16, 8), (16, 8), (64, 8)))
    P = G * (qc @ kc.T)
    kf = (gc[-1] - gc).exp()
    dvn = P.T @ dO + kf[:, None] * (kc @ dS1)
    w = Au @ (E[:, None] * kc)
    dre = -E[:, None] * (Au.T @ dvn)
    torch.testing.assert_close(-w.T @ dvn, kc.T @ dre, rtol=1e-12, atol=1e-12)
    dEK = Au.T @ (-(dvn @ S.T))
    torch.testing.assert_close(((E[:, None] * kc) * dEK).sum(-1), (kc * (dre @ S.T)).sum(-1), rtol=1e-12, atol=1e-12)
    s = 1 / kf
    torch.testing.assert_close((s[:, None] * (P.T @ dO) + kc @ dS1) / s[:, None], dvn, rtol=1e-12, atol=1e-12)
