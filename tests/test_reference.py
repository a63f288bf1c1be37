"""The chunked reference (the kernels' algorithm) equals the token-by-token recurrence in fp64."""

import pytest
import torch

from flashgdn import reference as R
from flashgdn.testing import make_inputs, random_seqlens, cu_from_lens

from conftest import rel_err

# (B, T, H, HV, varlen lengths or None, with h0, in-kernel l2norm, gates)
SHAPES = [
    (1, 1, 1, 1, None, True, False, "decay"),
    (2, 1, 2, 4, None, False, False, "decay"),
    (1, 63, 2, 2, None, True, False, "slow"),
    (2, 64, 1, 2, None, True, True, "decay"),
    (1, 65, 2, 8, None, False, False, "decay"),
    (3, 65, 1, 4, None, True, False, "zero"),
    (1, 127, 4, 4, None, True, True, "slow"),
    (2, 129, 2, 4, None, False, True, "decay"),
    (1, 1000, 1, 1, None, True, False, "slow"),
    (1, 1000, 2, 4, None, False, False, "decay"),
    (1, 1000, 1, 2, None, True, True, "zero"),
    (1, 200, 2, 2, [1, 199], True, False, "decay"),
    (1, 200, 2, 4, [0, 64, 1, 0, 135], True, False, "slow"),
    (1, 300, 1, 2, [65, 1, 63, 171], False, True, "decay"),
    (1, 130, 4, 8, [1, 1, 128], True, True, "zero"),
    (1, 257, 2, 2, [257], True, False, "decay"),
    (1, 100, 1, 4, [0, 100, 0], True, False, "slow"),
    (4, 17, 2, 2, None, True, False, "decay"),
    (1, 640, 2, 4, [320, 320], False, False, "slow"),
    (2, 300, 1, 1, None, True, True, "decay"),
    (1, 90, 2, 8, [30, 1, 59], True, True, "decay"),
]


@pytest.mark.parametrize("B,T,H,HV,lens,h0,l2,gates", SHAPES)
def test_chunked_equals_naive_fp64(B, T, H, HV, lens, h0, l2, gates):
    cu = cu_from_lens(lens) if lens is not None else None
    x = make_inputs(B, T, H, HV, K=32, V=24, dtype=torch.float64, cu_seqlens=cu, with_h0=h0, gates=gates,
                    normalize_k=not l2, seed=hash((B, T, H, HV, gates)) & 0xFFFF)
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    kw = dict(initial_state=x["initial_state"], output_final_state=True, use_qk_l2norm_in_kernel=l2,
              cu_seqlens=x["cu_seqlens"])
    o_naive, s_naive = R.naive_recurrence(*args, **kw)
    o_chunk, s_chunk = R.chunked(*args, **kw)
    assert o_naive.shape == (B, T, HV, 24) and s_naive.shape == (len(lens) if lens else B, HV, 32, 24)
    assert rel_err(o_chunk, o_naive) <= 1e-10
    assert rel_err(s_chunk, s_naive) <= 1e-10


def test_empty_sequence_keeps_initial_state():
    x = make_inputs(1, 10, 1, 2, K=16, V=8, dtype=torch.float64, cu_seqlens=[0, 0, 10, 10], seed=3)
    for fn in (R.naive_recurrence, R.chunked):
        o, s = fn(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                  output_final_state=True, cu_seqlens=x["cu_seqlens"])
        assert torch.equal(s[0], x["initial_state"][0])
        assert torch.equal(s[2], x["initial_state"][2])


def test_single_token_matches_closed_form():
    # One step from S0: S1 = e^g (I - b k k^T) S0 + b k v^T ; o = scale S1^T q
    x = make_inputs(1, 1, 1, 1, K=8, V=4, dtype=torch.float64, seed=11)
    q, k, v, g, b, S0 = (x[n][0, 0, 0] if n != "initial_state" else x[n][0, 0]
                         for n in ("q", "k", "v", "g", "beta", "initial_state"))
    S1 = g.exp() * (torch.eye(8, dtype=torch.float64) - b * torch.outer(k, k)) @ S0 + b * torch.outer(k, v)
    o_ref = (8 ** -0.5) * S1.T @ q
    o, s = R.chunked(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                     output_final_state=True)
    assert rel_err(o[0, 0, 0], o_ref) < 1e-13
    assert rel_err(s[0, 0], S1) < 1e-13


def test_reference_backward_runs_fp64():
    x = make_inputs(1, 70, 1, 2, K=16, V=8, dtype=torch.float64, seed=5)
    leaves = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "g", "beta", "initial_state")]
    o, s = R.chunked(*leaves[:5], initial_state=leaves[5], output_final_state=True)
    (o.square().sum() + s.sum()).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


def test_random_seqlens_sum():
    lens = random_seqlens(1000, 7, torch.Generator().manual_seed(0), min_len=1)
    assert sum(lens) == 1000 and min(lens) >= 1 and len(lens) == 7
