"""Forward on the H100 vs the fp64 reference (fresh random inputs, poisoned outputs)."""

import pytest
import torch

import flashgdn
from flashgdn import reference as R
from flashgdn.testing import make_inputs, cu_from_lens

from conftest import poison_cuda_allocator, rel_err

pytestmark = pytest.mark.gpu

# B, T, H, HV, varlen lengths, h0, l2norm, dtype, gates, fp32 beta
CASES = [
    (1, 1, 1, 1, None, True, False, torch.bfloat16, "decay", False),
    (2, 63, 2, 2, None, False, False, torch.bfloat16, "slow", False),
    (1, 64, 1, 4, None, True, True, torch.bfloat16, "decay", True),
    (3, 65, 2, 4, None, True, False, torch.float16, "slow", False),
    (1, 1000, 2, 8, None, True, True, torch.bfloat16, "slow", False),
    (2, 1000, 4, 4, None, False, False, torch.float16, "decay", True),
    (1, 8192, 2, 16, None, True, False, torch.bfloat16, "slow", False),
    (1, 4096, 1, 8, None, True, True, torch.bfloat16, "zero", False),
    (1, 700, 2, 4, [1, 0, 64, 200, 0, 435], True, False, torch.bfloat16, "slow", False),
    (1, 333, 1, 2, [65, 1, 127, 140], False, True, torch.bfloat16, "decay", True),
    (1, 2000, 4, 8, [1000, 1, 999], True, False, torch.bfloat16, "slow", False),
    (1, 32768, 2, 8, None, True, False, torch.bfloat16, "decay", False),
    (1, 8192, 1, 8, None, False, True, torch.float16, "slow", True),
    (1, 1100, 2, 8, [0, 1, 0, 64, 65, 63, 907], True, True, torch.bfloat16, "decay", False),
    (1, 129, 1, 1, [1, 1, 1, 126], False, False, torch.float16, "zero", False),
    # "steep": half the heads past the rank-1 limit (gate ratios formed per element)
    (2, 1000, 2, 8, None, True, False, torch.bfloat16, "steep", False),
    (2, 1000, 2, 8, None, True, False, torch.float16, "steep", True),
]
# A systematic sweep on top: lengths around the chunk size x GVA ratios 1/2/4/8, cycling the
# other options so every combination of (h0, l2norm, dtype, gates, fp32 beta) appears.
_OPTS = [(True, False, torch.bfloat16, "decay", False), (False, True, torch.float16, "slow", True),
         (True, True, torch.bfloat16, "zero", True), (False, False, torch.float16, "decay", False)]
for _i, (_T, (_H, _HV)) in enumerate((T, hv) for T in (63, 64, 65, 1000, 1)
                                     for hv in ((2, 2), (2, 4), (1, 4), (1, 8))):
    _h0, _l2, _dt, _g, _b32 = _OPTS[_i % 4]
    CASES.append((1 + (_i % 2), _T, _H, _HV, None, _h0, _l2, _dt, _g, _b32))


def run_case(B, T, H, HV, lens, h0, l2, dtype, gates, beta32, **kw):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=dtype, device="cuda", cu_seqlens=cu, with_h0=h0, gates=gates,
                    normalize_k=not l2)
    if beta32:
        x["beta"] = x["beta"].float()
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    N = len(lens) if lens else B
    poison_cuda_allocator((x["v"].shape, dtype), ((N, HV, 128, 128), torch.float32))
    o, ht = flashgdn.chunk_gated_delta_rule(*args, initial_state=x["initial_state"], output_final_state=True,
                                            use_qk_l2norm_in_kernel=l2, cu_seqlens=x["cu_seqlens"], **kw)
    o_ref, ht_ref = R.chunked(*args, initial_state=x["initial_state"], output_final_state=True,
                              use_qk_l2norm_in_kernel=l2, cu_seqlens=x["cu_seqlens"], dtype=torch.float64)
    return o, ht, o_ref, ht_ref


@pytest.mark.parametrize("B,T,H,HV,lens,h0,l2,dtype,gates,beta32", CASES)
def test_forward_matches_reference(B, T, H, HV, lens, h0, l2, dtype, gates, beta32):
    o, ht, o_ref, ht_ref = run_case(B, T, H, HV, lens, h0, l2, dtype, gates, beta32)
    torch.cuda.synchronize()
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert torch.isfinite(o).all() and torch.isfinite(ht).all()
    eo, es = rel_err(o, o_ref), rel_err(ht, ht_ref)
    print(f"o {eo:.2e} state {es:.2e}")
    assert eo <= 5e-3, eo
    assert es <= 5e-3, es


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_forward_large_raw_keys_with_l2norm(dtype):
    """The in-kernel L2 norm keeps raw q, k and applies their norm factors to rows; no product of raw
    keys with the state may be rounded to the input dtype before that factor is applied (fp16 tops
    out at 65504: raw keys ~1000 times a state of ~10 would pass it)."""
    x = make_inputs(1, 1000, 2, 8, dtype=torch.float32, device="cuda", gates="slow", normalize_k=False)
    q, k = (x[n] * 1000.0 for n in ("q", "k"))
    q, k, v = q.to(dtype), k.to(dtype), x["v"].to(dtype)
    args = (q, k, v, x["g"], x["beta"].to(dtype))
    h0 = x["initial_state"] * 10.0
    poison_cuda_allocator((v.shape, dtype), ((1, 8, 128, 128), torch.float32))
    o, ht = flashgdn.chunk_gated_delta_rule(*args, initial_state=h0, output_final_state=True,
                                            use_qk_l2norm_in_kernel=True)
    o_ref, ht_ref = R.chunked(*args, initial_state=h0, output_final_state=True, use_qk_l2norm_in_kernel=True,
                              dtype=torch.float64)
    torch.cuda.synchronize()
    assert torch.isfinite(o).all() and torch.isfinite(ht).all()
    eo, es = rel_err(o, o_ref), rel_err(ht, ht_ref)
    print(f"o {eo:.2e} state {es:.2e}")
    assert eo <= 5e-3, eo
    assert es <= 5e-3, es


# Intra-card context parallelism: forced splits and auto, against the reference and against
# the unsplit run. Segments that warm up (decaying gates) follow the unsplit run's trajectory:
# CP on vs off agree to <= 1e-3. Segments that take the exact correction (non-decaying heads in
# "slow" and "zero") compute the same exact quantity with other roundings, so they differ from the
# unsplit run by about the forward's own bf16 error (~3e-3 here): for them the test asks that
# they be no less accurate than the unsplit run against the fp64 reference.
CP_CASES = [
    # B, T, H, HV, lens, gates, cp
    (1, 8192, 2, 8, None, "decay", 1),
    (1, 8192, 2, 8, None, "decay", 2),
    (1, 32768, 1, 4, None, "slow", 8),
    (1, 8192, 2, 8, None, "slow", 4),
    (1, 4096, 1, 4, None, "zero", 8),
    (1, 32768, 2, 8, None, "decay", "auto"),
    (2, 3000, 2, 4, None, "slow", 8),
    (1, 6000, 2, 4, [1, 0, 2999, 3000], "decay", 4),
]


@pytest.mark.parametrize("B,T,H,HV,lens,gates,cp", CP_CASES)
def test_forward_context_parallel(B, T, H, HV, lens, gates, cp):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu, gates=gates)
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    kw = dict(initial_state=x["initial_state"], output_final_state=True, cu_seqlens=x["cu_seqlens"])
    o_cp, ht_cp = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=cp)
    o_1, ht_1 = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=None)
    o_ref, ht_ref = R.chunked(*args, **kw, dtype=torch.float64)
    torch.cuda.synchronize()
    assert torch.isfinite(o_cp).all() and torch.isfinite(ht_cp).all()
    assert rel_err(o_cp, o_ref) <= 5e-3 and rel_err(ht_cp, ht_ref) <= 5e-3
    if gates == "decay":
        assert rel_err(o_cp, o_1) <= 1e-3 and rel_err(ht_cp, ht_1) <= 1e-3
    else:
        assert_as_accurate(o_cp, ht_cp, o_1, ht_1, o_ref, ht_ref)


def assert_as_accurate(o_cp, ht_cp, o_1, ht_1, o_ref, ht_ref):
    """The split run's error vs the reference is at most the unsplit run's (+10%, + 2e-4)."""
    for a, b, ref in ((o_cp, o_1, o_ref), (ht_cp, ht_1, ht_ref)):
        e_cp, e_1 = rel_err(a, ref), rel_err(b, ref)
        assert e_cp <= 1.1 * e_1 + 2e-4, (e_cp, e_1)


def test_cp_tolerance_zero_takes_the_exact_correction():
    # Decaying gates: with the default tolerance the split segments warm up from zero; with
    # tolerance 0 none may, so every segment after the first takes the exact correction (its
    # incoming state from the transition products); cp_exact=False instead restarts them at the
    # sequence start, computing exactly the chunks the unsplit run computes, in the same order.
    from flashgdn import _validate
    from flashgdn.forward import forward
    x = make_inputs(1, 8192, 2, 8, dtype=torch.bfloat16, device="cuda", gates="decay")
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    kw = dict(initial_state=x["initial_state"], output_final_state=True)
    o_0, ht_0 = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=4, cp_tolerance=0.0)
    o_1, ht_1 = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=None)
    p = _validate.check_inputs(*args, None, x["initial_state"], True, None)
    o_r, ht_r = forward(*args, None, x["initial_state"], True, False, None, p, cp=4, cp_tolerance=0.0,
                        cp_exact=False)
    o_ref, ht_ref = R.chunked(*args, **kw, dtype=torch.float64)
    torch.cuda.synchronize()
    assert torch.equal(o_r, o_1) and torch.equal(ht_r, ht_1)
    assert rel_err(o_0, o_ref) <= 5e-3 and rel_err(ht_0, ht_ref) <= 5e-3
    assert_as_accurate(o_0, ht_0, o_1, ht_1, o_ref, ht_ref)


# Non-decaying heads cannot warm up: their segments take the exact correction. Against the
# fp64 reference (bound, and no worse than the unsplit run), with h0 on and off, varlen with empty and short
# sequences, and segment counts up to 16 (long walk-backs in cp_combine).
CP_EXACT_CASES = [
    # B, T, H, HV, lens, gates, cp, h0, dtype
    (1, 16384, 1, 4, None, "zero", 16, True, torch.bfloat16),
    (1, 8192, 2, 8, None, "slow", 8, False, torch.bfloat16),
    (2, 5000, 1, 2, None, "zero", 3, True, torch.float16),
    (1, 9000, 2, 4, [0, 4000, 1, 70, 4929], "zero", 4, True, torch.bfloat16),
]


@pytest.mark.parametrize("B,T,H,HV,lens,gates,cp,h0,dtype", CP_EXACT_CASES)
def test_forward_cp_exact_correction(B, T, H, HV, lens, gates, cp, h0, dtype):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=dtype, device="cuda", cu_seqlens=cu, gates=gates, with_h0=h0)
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    kw = dict(initial_state=x["initial_state"], output_final_state=True, cu_seqlens=x["cu_seqlens"])
    N = len(lens) if lens else B
    # outputs and the workspace (summaries, incoming states) come from NaN-filled blocks
    poison_cuda_allocator((x["v"].shape, dtype), ((N, HV, 128, 128), torch.float32), ((1 << 24,), torch.float32))
    o_cp, ht_cp = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=cp)
    o_1, ht_1 = flashgdn.chunk_gated_delta_rule(*args, **kw, cp=None)
    o_ref, ht_ref = R.chunked(*args, **kw, dtype=torch.float64)
    torch.cuda.synchronize()
    assert torch.isfinite(o_cp).all() and torch.isfinite(ht_cp).all()
    e1, e2 = rel_err(o_cp, o_1), rel_err(ht_cp, ht_1)
    eo, es = rel_err(o_cp, o_ref), rel_err(ht_cp, ht_ref)
    print(f"cp-exact {B},{T},{H},{HV},{lens},{gates},cp={cp}: vs unsplit o {e1:.2e} ht {e2:.2e}; "
          f"vs ref o {eo:.2e} ht {es:.2e} (unsplit vs ref o {rel_err(o_1, o_ref):.2e} ht {rel_err(ht_1, ht_ref):.2e})")
    assert eo <= 5e-3 and es <= 5e-3
    assert_as_accurate(o_cp, ht_cp, o_1, ht_1, o_ref, ht_ref)


