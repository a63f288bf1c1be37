"""Backward on the H100 vs the fp64 reference's autograd (fresh random inputs each case)."""

import pytest
import torch

import flashgdn
from flashgdn import reference as R, reference_bwd as RB
from flashgdn.testing import make_inputs, cu_from_lens

from conftest import rel_err

pytestmark = pytest.mark.gpu

# B, T, H, HV, varlen lengths, h0, d(final state), l2norm, dtype, gates, cp
CASES = [
    (1, 1, 1, 1, None, True, True, False, torch.bfloat16, "decay", "auto"),
    (1, 65, 2, 2, None, True, False, True, torch.bfloat16, "slow", "auto"),
    (2, 1000, 2, 8, None, False, True, False, torch.bfloat16, "decay", "auto"),
    (1, 8192, 2, 8, None, True, True, False, torch.bfloat16, "slow", "auto"),
    (1, 8192, 1, 4, None, True, True, True, torch.bfloat16, "decay", 4),
    (1, 8192, 2, 8, None, False, True, False, torch.bfloat16, "decay", 8),
    (1, 8192, 2, 2, None, True, False, False, torch.bfloat16, "zero", None),
    (1, 700, 2, 4, [1, 0, 64, 200, 0, 435], True, True, False, torch.bfloat16, "slow", "auto"),
    (1, 333, 1, 8, [65, 1, 127, 140], False, True, True, torch.bfloat16, "decay", "auto"),
    (1, 2000, 2, 8, [1000, 1, 999], True, False, False, torch.bfloat16, "slow", 2),
    (1, 1100, 1, 4, [0, 1, 0, 64, 65, 63, 907], True, True, True, torch.bfloat16, "decay", "auto"),
    (2, 65, 1, 1, None, True, True, False, torch.float16, "decay", "auto"),
    (1, 1000, 2, 8, None, True, True, True, torch.float16, "slow", "auto"),
    (1, 129, 1, 1, [1, 1, 1, 126], False, False, False, torch.float16, "zero", "auto"),
    (1, 1, 2, 8, None, False, True, True, torch.bfloat16, "slow", "auto"),
    (1, 66, 1, 8, [1, 65], True, True, False, torch.bfloat16, "decay", 2),
    (1, 8192, 1, 8, None, True, True, True, torch.bfloat16, "slow", "auto"),
    (1, 1000, 4, 4, None, True, True, False, torch.float16, "decay", None),
    (1, 8193, 2, 4, [1, 8192], True, True, False, torch.bfloat16, "decay", 4),
    (2, 65, 1, 4, None, False, True, True, torch.float16, "zero", "auto"),
    # "steep": half the heads past the rank-1 limit (gate ratios formed per element)
    (2, 300, 2, 8, None, True, True, False, torch.bfloat16, "steep", "auto"),
    (2, 300, 2, 8, None, True, True, False, torch.float16, "steep", "auto"),
]
# Sweep: T x GVA ratio 1/4/8, cycling (h0, d final state, l2norm, gates, cp).
_OPTS = [(True, True, False, "decay", "auto"), (False, False, True, "slow", None),
         (True, False, True, "zero", 2), (False, True, False, "slow", "auto")]
for _i, (_T, (_H, _HV)) in enumerate((T, hv) for T in (1, 65, 1000, 8192) for hv in ((2, 2), (1, 4), (1, 8))):
    _h0, _dht, _l2, _g, _cp = _OPTS[_i % 4]
    CASES.append((1 + (_i % 2) * (_T < 8192), _T, _H, _HV, None, _h0, _dht, _l2, torch.bfloat16, _g, _cp))

NAMES = ("dq", "dk", "dv", "dg", "dbeta", "dh0")
SOURCE = dict(dq="q", dk="k", dv="v", dg="g", dbeta="beta", dh0="initial_state")
TOL = dict(dq=1e-2, dk=1e-2, dv=1e-2, dg=2e-2, dbeta=1e-2, dh0=1e-2)


def _grads(fn, x, do, dht, l2, dtype_ref=None, **kw):
    names = ["q", "k", "v", "g", "beta"] + (["initial_state"] if x["initial_state"] is not None else [])
    leaves = {n: (x[n].to(dtype_ref) if dtype_ref else x[n]).detach().clone().requires_grad_(True) for n in names}
    h0 = leaves.get("initial_state")
    o, ht = fn(leaves["q"], leaves["k"], leaves["v"], leaves["g"], leaves["beta"], initial_state=h0,
               output_final_state=True, use_qk_l2norm_in_kernel=l2, cu_seqlens=x["cu_seqlens"], **kw)
    loss = (o.double() * do.double()).sum()
    if dht is not None:
        loss = loss + (ht.double() * dht.double()).sum()
    return torch.autograd.grad(loss, [leaves[n] for n in names])


@pytest.mark.parametrize("B,T,H,HV,lens,h0,with_dht,l2,dtype,gates,cp", CASES)
def test_backward_matches_reference(B, T, H, HV, lens, h0, with_dht, l2, dtype, gates, cp):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=dtype, device="cuda", cu_seqlens=cu, with_h0=h0, gates=gates,
                    normalize_k=not l2)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 128, device="cuda").to(dtype)
    dht = torch.randn(N, HV, 128, 128, device="cuda") if with_dht else None
    got = _grads(flashgdn.chunk_gated_delta_rule, x, do, dht, l2, cp=cp)
    ref = _grads(lambda *a, **k: R.chunked(*a, **k, dtype=torch.float64), x, do, dht, l2)
    torch.cuda.synchronize()
    errs = {}
    for name, a, b in zip(NAMES, got, ref):
        assert a.dtype == x[SOURCE[name]].dtype
        assert torch.isfinite(a).all(), name
        # A gradient that is exactly zero (dg at T = 1 without h0: the gate scales a zero state)
        # comes out of the fp64 reference as roundoff (~1e-15): judge it in absolute terms.
        exact_zero = b.double().norm().item() <= 1e-10
        errs[name] = a.double().norm().item() if exact_zero else rel_err(a, b)
    print(" ".join(f"{n} {e:.2e}" for n, e in errs.items()))
    for name, e in errs.items():
        assert e <= TOL[name], (name, e)


@pytest.mark.parametrize("lens,cp", [(None, "auto"), ([1, 0, 130, 64, 0], "auto"), ([300, 0, 1, 700], 3),
                                     (None, 2)])
def test_backward_stages_match_reference(lens, cp):
    """The state pass (fused_fwd storing chunk states), bwd_dstates and bwd_local vs
    reference_bwd's stages (bwd_local on the kernels' own states)."""
    from flashgdn.backward import dv_new_values, sequential_stages
    from flashgdn._layout import seq_layout
    B, T, H, HV = (2, 200, 1, 2) if lens is None else (1, sum(lens), 1, 2)
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 128, device="cuda").to(torch.bfloat16)
    dht = torch.randn(N, HV, 128, 128, device="cuda")
    f = lambda t: t.reshape((B * T,) + tuple(t.shape[2:]))  # noqa: E731
    q, k, v, g = (f(x[n]) for n in ("q", "k", "v", "g"))
    d = f(do)
    b = f(x["beta"]).float().contiguous()
    lay = seq_layout(B, T, x["cu_seqlens"], torch.device("cuda"))
    st = sequential_stages(q, k, v, g, b, d, 0.1, x["initial_state"], dht, x["cu_seqlens"], True, lay, H, HV, cp=cp)
    idx = RB.chunk_index(B, T, x["cu_seqlens"], "cuda")
    hs, vn = RB.chunk_states(k, v, g, b, idx, x["initial_state"])
    dhs, dvn, dh0 = RB.chunk_dstates(q, k, g, b, d, idx, 0.1, N, dht)
    torch.cuda.synchronize()
    real = idx.valid[:, 0]
    assert rel_err(st["hsT"].transpose(-1, -2)[real], hs[real]) < 1e-2
    assert rel_err(st["dhsT"].transpose(-1, -2)[real], dhs[real]) < 1e-2
    assert rel_err(dv_new_values(st["dv_new"]), dvn) < 1e-2
    assert rel_err(st["dh0"], dh0) < 1e-2
    # the per-chunk kernel on the kernels' own states vs the reference stage on the same ones: the
    # stored (rounded) states, except that a sequence of one partial chunk starts from h0 itself
    # (fp32), and v_new recomputed from them as the kernel does
    from flashgdn.backward import chunk_grads
    got = chunk_grads(q, k, v, b, d, st, lay, H, HV, 0.1)
    used = st["hsT"].transpose(-1, -2).to(torch.float64)
    cu_all = x["cu_seqlens"] if x["cu_seqlens"] is not None else torch.arange(B + 1, device="cuda") * T
    seq_len = (cu_all[1:] - cu_all[:-1])[idx.seq]
    one = idx.valid[:, 0] & (idx.pos == 0) & (seq_len < 64)
    used[one] = x["initial_state"][idx.seq[one]].to(torch.float64)
    want = RB.chunk_local_grads(q, k, v, g, b, d, used, st["dhsT"].transpose(-1, -2),
                                RB.chunk_v_new(k, v, g, b, used, idx), dv_new_values(st["dv_new"]), idx, 0.1)
    torch.cuda.synchronize()
    for name, a, r in zip(("dq", "dk", "dv", "dg", "dbeta"), got, want):
        assert torch.isfinite(a).all(), name
        assert rel_err(a, r) < 1e-2, (name, rel_err(a, r))
    # GVA sums in the kernel (float atomics into buffers the call zeroes) = the per-value-head
    # gradients summed over each group. NaN-filled blocks of dq / dk's size, freed just before,
    # are what the caching allocator hands the call: a missed zeroing shows as NaN.
    poison = [torch.full((B * T, H, 128), float("nan"), device="cuda") for _ in range(2)]
    del poison
    summed = chunk_grads(q, k, v, b, d, st, lay, H, HV, 0.1, gva_sum=True)
    torch.cuda.synchronize()
    for name, a, per_head in zip(("dq", "dk"), summed[:2], got[:2]):
        assert a.shape == (B * T, H, 128), name
        assert rel_err(a, per_head.view(B * T, H, HV // H, 128).sum(2)) < 1e-6, name
    for name, a, r in zip(("dv", "dg", "dbeta"), summed[2:], got[2:]):
        assert torch.equal(a, r), name


@pytest.mark.parametrize("lens,l2,cp", [(None, False, None), ([1, 0, 130, 64, 300], True, 2)])
def test_forward_on_given_chunk_prep(lens, l2, cp):
    """The backward's state pass hands fgdn_forward chunk_prep's outputs instead of letting it
    make its own: same o, final state and chunk states, bit for bit; and the states-only kernel
    it runs (output=False: no q, P~ or o work) gives the same final and chunk states as the
    kernel that also forms o."""
    from flashgdn import ops
    from flashgdn._layout import seq_layout
    from flashgdn._validate import Problem
    from flashgdn.forward import forward
    B, T, H, HV = (2, 200, 1, 4) if lens is None else (1, sum(lens), 1, 4)
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu, normalize_k=not l2)
    q, k, v, g = x["q"], x["k"], x["v"], x["g"]
    beta = x["beta"].float()
    lay = seq_layout(B, T, x["cu_seqlens"], torch.device("cuda"))
    p = Problem(B, T, H, HV, 128, 128, lay.num_seqs, tuple(lens) if lens else None)
    prep = ops.chunk_prep(k, beta, g, cu_seqlens=x["cu_seqlens"], use_qk_l2norm=l2, q=q, scale=0.1, layout=lay)
    runs = []
    for given in (None, prep):
        hs = torch.full((lay.num_chunks, HV, 128, 128), float("nan"), device="cuda", dtype=torch.bfloat16)
        o, ht = forward(q, k, v, g, beta, 0.1, x["initial_state"], True, l2, x["cu_seqlens"], p, cp=cp,
                        chunk_states=hs, prep=given)
        runs.append((o, ht, hs))
    torch.cuda.synchronize()
    for a, b in zip(*runs):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))   # unused chunk rows stay NaN in both
    hs = torch.full((lay.num_chunks, HV, 128, 128), float("nan"), device="cuda", dtype=torch.bfloat16)
    o, ht = forward(q, k, v, g, beta, 0.1, x["initial_state"], True, l2, x["cu_seqlens"], p, cp=cp,
                    chunk_states=hs, prep=prep, output=False)
    torch.cuda.synchronize()
    assert o is None
    assert torch.equal(ht, runs[1][1])
    assert torch.equal(hs.nan_to_num(7.0), runs[1][2].nan_to_num(7.0))
    with pytest.raises(ValueError, match="output=False needs chunk_states"):
        forward(q, k, v, g, beta, 0.1, None, False, l2, x["cu_seqlens"], p, output=False)
    # the C API: o may be NULL only together with chunk_states_t
    from flashgdn import _native
    ws = torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="o must be non-NULL"):
        _native.ext().forward(0, 2, B * T, B, T, 0, H, HV, 0.1, False, q.data_ptr(), k.data_ptr(), v.data_ptr(),
                              g.data_ptr(), beta.data_ptr(), 0, 0, 0, 0, 1e-6, ws.data_ptr(), ws.numel(),
                              _native.stream_handle(q.device), 0, 0, 0, 0, False)


def test_backward_deterministic_gva():
    """GVA: deterministic=True (per-value-head buffers, fixed-order sums) is bitwise
    reproducible; the default (float atomics) agrees with it to bf16 rounding; both match the
    fp64 reference."""
    x = make_inputs(1, 1000, 2, 8, dtype=torch.bfloat16, device="cuda")
    do = torch.randn(1, 1000, 8, 128, device="cuda").to(torch.bfloat16)
    dht = torch.randn(1, 8, 128, 128, device="cuda")
    det = [_grads(flashgdn.chunk_gated_delta_rule, x, do, dht, False, deterministic=True) for _ in range(2)]
    fast = _grads(flashgdn.chunk_gated_delta_rule, x, do, dht, False)
    ref = _grads(lambda *a, **k: R.chunked(*a, **k, dtype=torch.float64), x, do, dht, False)
    for name, a, b, f, r in zip(NAMES, det[0], det[1], fast, ref):
        assert torch.equal(a, b), name
        assert rel_err(f, a) <= 1e-3, (name, rel_err(f, a))
        assert rel_err(a, r) <= TOL[name] and rel_err(f, r) <= TOL[name], name


def test_backward_only_requested_grads():
    x = make_inputs(1, 130, 1, 2, dtype=torch.bfloat16, device="cuda")
    v = x["v"].clone().requires_grad_()
    o, _ = flashgdn.chunk_gated_delta_rule(x["q"], x["k"], v, x["g"], x["beta"], initial_state=x["initial_state"])
    o.float().square().sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()
    assert x["q"].grad is None and x["initial_state"].grad is None


@pytest.mark.parametrize("B,T,H,HV,lens,l2,gates,cp", [(1, 8192, 2, 8, None, False, "decay", "auto"),
                                                       (1, 900, 1, 4, [1, 0, 700, 64, 135], True, "slow", 2),
                                                       (1, 6000, 1, 4, None, False, "zero", 4)])
def test_backward_dh0_only(B, T, H, HV, lens, l2, gates, cp):
    """Only the initial state needs a gradient: the backward runs chunk_prep and the reverse pass
    only (no state pass, no per-chunk gradients; CP split and exact correction included), and dh0
    still matches the fp64 reference; the other inputs get no gradient."""
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu, gates=gates, normalize_k=not l2)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 128, device="cuda").to(torch.bfloat16)
    dht = torch.randn(N, HV, 128, 128, device="cuda")
    h0 = x["initial_state"].detach().clone().requires_grad_(True)
    o, ht = flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=h0,
                                            output_final_state=True, use_qk_l2norm_in_kernel=l2, cu_seqlens=x["cu_seqlens"], cp=cp)
    ((o.double() * do.double()).sum() + (ht.double() * dht.double()).sum()).backward()
    ref = _grads(lambda *a, **k: R.chunked(*a, **k, dtype=torch.float64), x, do, dht, l2)[5]
    assert h0.grad is not None and h0.grad.dtype == h0.dtype and torch.isfinite(h0.grad).all()
    assert all(x[n].grad is None for n in ("q", "k", "v", "g", "beta"))
    e = rel_err(h0.grad, ref)
    print(f"dh0 {e:.2e}")
    assert e <= TOL["dh0"], e


# Non-decaying heads: both passes' split segments take the exact correction (cp_summary /
# bwd_cp_summary + cp_combine). The gradients must be as accurate as the unsplit run's.
@pytest.mark.parametrize("B,T,H,HV,lens,gates,cp", [(1, 8192, 1, 4, None, "zero", 8),
                                                    (1, 6000, 2, 4, [3000, 1, 0, 2999], "zero", 4),
                                                    (2, 4100, 1, 2, None, "slow", 5)])
def test_backward_cp_exact_correction(B, T, H, HV, lens, gates, cp):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu, gates=gates)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 128, device="cuda").to(torch.bfloat16)
    dht = torch.randn(N, HV, 128, 128, device="cuda")
    got = _grads(flashgdn.chunk_gated_delta_rule, x, do, dht, False, cp=cp)
    one = _grads(flashgdn.chunk_gated_delta_rule, x, do, dht, False, cp=None)
    ref = _grads(lambda *a, **k: R.chunked(*a, **k, dtype=torch.float64), x, do, dht, False)
    torch.cuda.synchronize()
    line = []
    for name, a, a1, b in zip(NAMES, got, one, ref):
        assert torch.isfinite(a).all(), name
        e, e1 = rel_err(a, b), rel_err(a1, b)
        line.append(f"{name} {e:.2e} (unsplit {e1:.2e})")
        assert e <= TOL[name] and e <= 1.1 * e1 + 5e-4, (name, e, e1)
    print("cp-exact bwd " + " ".join(line))


@pytest.mark.parametrize("B,T,H,HV,lens,l2,cp", [(1, 1000, 2, 8, None, False, "auto"),
                                              (1, 900, 1, 4, [1, 0, 700, 64, 135], True, 2)])
def test_save_wy_factors(B, T, H, HV, lens, l2, cp):
    """save_wy_factors=True (default: the forward keeps chunk_prep's outputs for the backward)
    and False (only the inputs are kept; the backward reruns chunk_prep) give bitwise equal
    gradients (deterministic sums), and the memory held from the forward to the backward differs
    by exactly the documented tensors: L (64 per token and value head, input dtype), the chunk
    stats (2 fp32 per chunk) and the gate table (78 x 64 fp32 per chunk)."""
    from flashgdn._layout import seq_layout
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", cu_seqlens=cu, normalize_k=not l2)
    N = len(lens) if lens else B
    do = torch.randn(B, T, HV, 128, device="cuda").to(torch.bfloat16)
    dht = torch.randn(N, HV, 128, 128, device="cuda")
    names = ["q", "k", "v", "g", "beta", "initial_state"]
    grads, held = {}, {}
    for save in (True, False):
        leaves = [x[n].detach().clone().requires_grad_(True) for n in names]
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        o, ht = flashgdn.chunk_gated_delta_rule(*leaves[:5], initial_state=leaves[5], output_final_state=True,
                                                use_qk_l2norm_in_kernel=l2, cu_seqlens=x["cu_seqlens"], cp=cp,
                                                deterministic=True, save_wy_factors=save)
        torch.cuda.synchronize()
        held[save] = torch.cuda.memory_allocated() - before
        loss = (o.double() * do.double()).sum() + (ht.double() * dht.double()).sum()
        grads[save] = torch.autograd.grad(loss, leaves)
        del o, ht, loss
    for name, a, b in zip(NAMES, grads[True], grads[False]):
        assert torch.equal(a, b), name
    ref = _grads(lambda *a, **k: R.chunked(*a, **k, dtype=torch.float64), x, do, dht, l2)
    for name, a, r in zip(NAMES, grads[True], ref):
        assert rel_err(a, r) <= TOL[name], (name, rel_err(a, r))
    nc = max(seq_layout(B, T, x["cu_seqlens"], x["q"].device).num_chunks, 1)
    want = B * T * HV * 64 * 2 + nc * HV * 2 * 4 + nc * HV * 78 * 64 * 4
    # the caching allocator rounds each block up to 512 bytes
    assert abs(held[True] - held[False] - want) <= 3 * 512, (held, want)
