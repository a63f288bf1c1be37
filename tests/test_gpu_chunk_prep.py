"""chunk_prep kernel (K K^T + gate-free WY inverse + chunk stats) vs the fp64 reference."""

import pytest
import torch

from flashgdn import ops
from flashgdn import reference as R
from flashgdn.testing import make_inputs, cu_from_lens

from conftest import rel_err

pytestmark = pytest.mark.gpu

CASES = [
    # B, T, H, HV, varlen lengths, l2norm, dtype, fp32 beta
    (1, 1, 1, 1, None, False, torch.bfloat16, False),
    (2, 63, 2, 2, None, False, torch.bfloat16, True),
    (1, 64, 1, 4, None, True, torch.bfloat16, False),
    (3, 65, 2, 4, None, False, torch.float16, False),
    (1, 1000, 2, 8, None, True, torch.float16, True),
    (2, 300, 4, 4, None, False, torch.bfloat16, False),
    (1, 500, 2, 6, [1, 0, 64, 200, 0, 235], False, torch.bfloat16, False),
    (1, 333, 1, 2, [65, 1, 127, 140], True, torch.bfloat16, True),
]


def reference_prep(x, lens, l2):
    k = x["k"].double()
    if l2:
        k = R.l2_normalize(k)
    HV = x["v"].shape[2]
    k = k.repeat_interleave(HV // k.shape[2], dim=2)
    v, g, beta = x["v"].double(), x["g"].double(), x["beta"].double()
    B, T = k.shape[:2]
    L = torch.zeros(B, T, HV, 64, dtype=torch.float64, device=k.device)
    stats = []
    seqs = [(b, 0, T) for b in range(B)] if lens is None else \
        [(0, a, b) for a, b in zip(cu_from_lens(lens)[:-1], cu_from_lens(lens)[1:])]
    for b, bos, eos in seqs:
        for c in range((eos - bos + 63) // 64):
            it = R.chunk_intermediates(k, v, g, beta, bos, eos, b, c)
            n, lo = it["n"], it["lo"]
            L[b, lo:lo + n] = it["L"][:, :n].transpose(0, 1)
            kc = it["kc"]                                   # [HV,64,K] (padded rows zero)
            bk = (beta[b, lo:lo + n].transpose(0, 1) * (kc[:, :n] ** 2).sum(-1)).amax(-1)
            stats.append(torch.stack([g[b, lo:lo + n].sum(0), bk], -1))
    return L, torch.stack(stats) if stats else None


@pytest.mark.parametrize("B,T,H,HV,lens,l2,dtype,beta32", CASES)
def test_chunk_prep(B, T, H, HV, lens, l2, dtype, beta32):
    check_chunk_prep(B, T, H, HV, lens, l2, dtype, beta32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_chunk_prep_steep_gates(dtype):
    """Every other value head decays by ~150 per chunk: past the rank-1 limit (80), so the gate
    ratios of its WY factors are formed per element (the other heads and the short last chunk
    stay rank-1)."""
    check_chunk_prep(2, 200, 2, 8, None, False, dtype, False, gates="steep")


def check_chunk_prep(B, T, H, HV, lens, l2, dtype, beta32, gates="slow"):
    cu = cu_from_lens(lens) if lens else None
    x = make_inputs(B, T, H, HV, dtype=dtype, device="cuda", cu_seqlens=cu, normalize_k=not l2, gates=gates)
    beta = x["beta"].float() if beta32 else x["beta"]
    x["beta"] = beta
    n_chunks = sum((n + 63) // 64 for n in lens) if lens else B * ((T + 63) // 64)
    bound = n_chunks if lens is None else T // 64 + len(lens)
    L = torch.full((B, T, HV, 64), float("nan"), dtype=dtype, device="cuda")
    stats = torch.full((bound, HV, 2), float("nan"), dtype=torch.float32, device="cuda")
    gvec = torch.full((bound, HV, ops.GATE_VECTOR_ROWS, 64), float("nan"), dtype=torch.float32, device="cuda")
    ops.chunk_prep(x["k"], beta, x["g"], cu_seqlens=x["cu_seqlens"], use_qk_l2norm=l2, q=x["q"],
                   out=(L, stats, gvec))
    torch.cuda.synchronize()
    L_ref, stats_ref = reference_prep(x, lens, l2)
    assert torch.isfinite(L).all(), "some rows of L were not written"
    err = rel_err(L, L_ref)
    assert err < (6e-3 if dtype == torch.bfloat16 else 2e-3), err
    assert torch.isfinite(stats[:n_chunks]).all()
    assert rel_err(stats[:n_chunks, :, 0], stats_ref[..., 0]) < 1e-5
    assert rel_err(stats[:n_chunks, :, 1], stats_ref[..., 1]) < 1e-2
    # gate vectors: every row written; gc (row 7) is the chunk-local cumsum of g, and row 8
    # holds exp(gc_last) - checked against the stats' sum of g
    assert torch.isfinite(gvec[:n_chunks]).all()
    assert rel_err(gvec[:n_chunks, :, 7, 63], stats[:n_chunks, :, 0]) < 1e-5
    assert rel_err(gvec[:n_chunks, :, 8, 0], stats[:n_chunks, :, 0].exp()) < 1e-5
    # the backward's rows (9..13) are plain factors, zero past each sequence's end
    seq_lens = lens if lens is not None else [T] * B
    nvalid = torch.tensor([min(64, n - 64 * c) for n in seq_lens for c in range((n + 63) // 64)], device="cuda")
    valid = (torch.arange(64, device="cuda")[None, :] < nvalid[:, None]).float()[:, None, :]   # [chunks, 1, 64]
    gc = gvec[:n_chunks, :, 7].double()
    assert rel_err(gvec[:n_chunks, :, 9], gc.exp() * valid) < 1e-5
    if not l2:
        assert rel_err(gvec[:n_chunks, :, 11], (gc[:, :, 63:] - gc).exp() * valid) < 1e-5
        assert torch.equal(gvec[:n_chunks, :, 13], valid.expand_as(gvec[:n_chunks, :, 13]))
        assert (gvec[:n_chunks, :, 10] * (1 - valid) == 0).all()
    # the forward's gated WY factors (rows GV_WY_AU / GV_WY_AW onward, in the input dtype): Au =
    # (G * L) diag(cu), Aw = (G * L) diag(cw), checked on the valid rows against L and the table
    wy = gvec[:n_chunks].view(dtype).reshape(n_chunks, HV, 2 * ops.GATE_VECTOR_ROWS, 64).double()
    Lc = torch.zeros(n_chunks, HV, 64, 64, dtype=torch.float64, device="cuda")
    seq_starts = [b * T for b in range(B)] if lens is None else [int(c) for c in cu_from_lens(lens)[:-1]]
    Lflat = L.reshape(-1, HV, 64).double()
    c = 0
    for start, n in zip(seq_starts, seq_lens):
        for cc in range((n + 63) // 64):
            m = min(64, n - 64 * cc)
            Lc[c, :, :m] = Lflat[start + 64 * cc:start + 64 * cc + m].transpose(0, 1)
            c += 1
    rank1 = gvec[:n_chunks, :, 8, 1:2].double() > 0.5                       # [chunks, HV, 1]
    if gates == "steep":
        assert rank1.any() and not rank1.all(), "both gate-ratio modes should occur here"
    G = torch.where(rank1[..., None], 1.0, (gc[..., :, None] - gc[..., None, :]).clamp(max=0).exp())
    if dtype == torch.float16:
        G = torch.where(rank1[..., None], gvec[:n_chunks, :, 6, :, None].double().expand_as(G), G)
    vmask = valid[:, :, :, None]                                             # valid rows t
    for row, col in ((14, 2), (46, 3)):                                      # (GV_WY_AU, GV_CU), (GV_WY_AW, GV_CW)
        want = Lc * G * gvec[:n_chunks, :, col, None, :].double()
        got = wy[:, :, 2 * row:2 * row + 64]
        assert rel_err(got * vmask, want * vmask) < 1e-2, (row, rel_err(got * vmask, want * vmask))


def test_chunk_prep_misaligned_k():
    """K is read with TMA: the op realigns a misaligned view, the C API refuses the raw pointer."""
    from flashgdn import _native
    x = make_inputs(1, 130, 1, 2, dtype=torch.bfloat16, device="cuda")
    k = x["k"]
    k_odd = torch.empty(k.numel() + 1, dtype=k.dtype, device="cuda")[1:].view_as(k).copy_(k)
    assert k_odd.data_ptr() % 16 != 0
    L_a, stats_a, _ = ops.chunk_prep(k, x["beta"], x["g"])
    L_b, stats_b, _ = ops.chunk_prep(k_odd, x["beta"], x["g"])
    torch.cuda.synchronize()
    assert torch.equal(L_a, L_b) and torch.equal(stats_a, stats_b)
    # the gate-vector table too (vector stores; the forward reads it with TMA)
    rows = ops.GATE_VECTOR_ROWS
    g_odd = torch.empty(1 + 3 * 2 * rows * 64, dtype=torch.float32, device="cuda")[1:].view(3, 2, rows, 64)
    with pytest.raises(ValueError, match="16-byte aligned"):
        ops.chunk_prep(k, x["beta"], x["g"], out=(L_a.clone(), stats_a.clone(), g_odd))
    with pytest.raises(ValueError, match="k must be 16-byte aligned"):
        _native.ext().chunk_prep(0, 0, 130, 1, 130, 0, 0, 3, 1, 2, False, 1.0, 0, k_odd.data_ptr(),
                                 x["beta"].data_ptr(), x["g"].data_ptr(), L_a.data_ptr(), stats_a.data_ptr(),
                                 stats_a.data_ptr(), _native.stream_handle(k.device))
