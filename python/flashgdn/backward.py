"""GPU backward: chunk_prep, the state pass (the forward kernel storing every chunk's state,
with the forward's CP), the reverse pass (kernels_tl/bwd_dstates.py) and the per-chunk
gradients (kernels_tl/bwd_local.py) run as AOT kernels; this module sums the GVA groups and differentiates the L2 norm. See docs/backward.md
for the algebra and what is saved.

The states are recomputed; chunk_prep's outputs are recomputed too unless the forward kept
them (``prep``, autograd's default: docs/backward.md, "What is saved").
"""

from __future__ import annotations

import torch

from . import _native, cp as cp_plan, ops
from ._layout import seq_layout
from ._validate import Problem
from .forward import forward


def _l2_factor(x: torch.Tensor) -> torch.Tensor:
    """1/sqrt(|x|^2 + 1e-6) per row, fp32 (the forward kernels' in-kernel norm)."""
    return torch.rsqrt(x.float().square().sum(-1) + 1e-6)


def _l2_backward(x: torch.Tensor, r: torch.Tensor, dxn: torch.Tensor) -> torch.Tensor:
    """Gradient through xn = x r, r = (|x|^2 + eps)^-1/2:  dx = r (dxn - xn (xn . dxn))."""
    xn = x.float() * r[..., None]
    return r[..., None] * (dxn - xn * (xn * dxn).sum(-1, keepdim=True))


def backward(q, k, v, g, beta, do, dht, scale, initial_state, cu_seqlens, want, use_qk_l2norm=False,
             problem=None, cp="auto", cp_tolerance=1e-6, deterministic=False, prep=None, layout=None):
    """Gradients of the GPU forward. q, k, v, do ``[B, T, ., 128]``, g, beta ``[B, T, HV]``;
    ``want`` = which of (q, k, v, g, beta, initial_state) need a gradient. With ``use_qk_l2norm``
    q and k are raw: the kernels take the norm as row factors (as the forward does) and the
    gradient goes through the norm here. ``problem`` (the forward's ``_validate.Problem``; built
    by sequential_stages when None), ``cp`` and ``cp_tolerance`` drive the state pass's context parallelism as in
    the forward. With GVA, dq and dk are summed over each group in the kernel with float atomics
    (HV / H times less memory; the last bits can vary between runs) unless ``deterministic``
    (per-value-head buffers summed here). ``prep``: ``ops.chunk_prep``'s ``(L, stats, gate_vectors)``
    for these very inputs (scale and norm included) if the forward kept them; None recomputes them.
    ``layout``: ``_layout.seq_layout(B, T, cu_seqlens)`` if the caller built it already. Returns ``(dq, dk, dv, dg, dbeta, dh0)`` with None
    where not wanted."""
    _native.require_gpu(q.device)
    B, T, H, K = q.shape
    HV = v.shape[2]
    Ttot = B * T
    device = q.device
    if scale is None:
        scale = K ** -0.5
    flat = lambda x: _native.tma_ready(x.reshape((Ttot,) + tuple(x.shape[2:])))  # noqa: E731
    qf, kf, vf, dof = flat(q), flat(k), flat(v), flat(do.to(q.dtype))
    rq = rk = None
    if use_qk_l2norm:
        rq, rk = _l2_factor(qf).contiguous(), _l2_factor(kf).contiguous()
    gf = flat(g).to(torch.float32).contiguous()
    bf = flat(beta).to(torch.float32).contiguous()
    h0 = initial_state.to(torch.float32).contiguous() if initial_state is not None else None
    dht32 = dht.to(torch.float32).contiguous() if dht is not None else None
    lay = layout if layout is not None else seq_layout(B, T, cu_seqlens, device)
    # The reverse pass alone gives dh0; the state pass and the per-chunk gradients run only when
    # one of q, k, v, g, beta needs a gradient (then all five come from the same kernels).
    local = any(want[:5])
    st = sequential_stages(qf, kf, vf, gf, bf, dof, scale, h0, dht32, cu_seqlens, bool(want[5]), lay,
                           H, HV, rq, rk, problem=problem, cp=cp, cp_tolerance=cp_tolerance, states=local,
                           prep=prep)
    dh0 = st["dh0"]
    res = [None] * 5
    if local:
        gva_sum = HV != H and not deterministic
        dq, dk, dv, dg, db = chunk_grads(qf, kf, vf, bf, dof, st, lay, H, HV, scale, rq, rk, gva_sum=gva_sum)
        del st   # the chunk states and state gradients: free before the sums and the norm's gradient
        if HV != H and not gva_sum:
            dq = dq.view(Ttot, H, HV // H, K).sum(2)
            dk = dk.view(Ttot, H, HV // H, K).sum(2)
        if use_qk_l2norm:
            dq, dk = _l2_backward(qf, rq, dq), _l2_backward(kf, rk, dk)
        unflat = lambda x: x.reshape((B, T) + tuple(x.shape[1:]))  # noqa: E731
        res = [unflat(dq).to(q.dtype), unflat(dk).to(k.dtype), unflat(dv).to(v.dtype), unflat(dg).to(g.dtype),
               unflat(db).to(beta.dtype)]
    res.append(dh0.to(initial_state.dtype) if dh0 is not None else None)
    return tuple(r if w else None for r, w in zip(res, want))


def chunk_grads(qf, kf, vf, bf, dof, st, lay, H, HV, scale, rq=None, rk=None, gva_sum=False):
    """The per-chunk gradients (kernels_tl/bwd_local.py) from sequential_stages' outputs ``st``
    on the same token-packed inputs. Returns fp32 dq, dk (of the normalised q / k when rq, rk are
    given) ``[Ttot, HV, K]`` per value head, or with ``gva_sum`` ``[Ttot, H, K]`` summed over each
    GVA group by float atomics; dv ``[Ttot, HV, V]`` in vf's dtype, fp32 dg, dbeta ``[Ttot, HV]``."""
    Ttot, _, K = qf.shape
    V = vf.shape[-1]
    device = qf.device
    f32 = dict(dtype=torch.float32, device=device)
    gva_sum = bool(gva_sum) and HV != H
    ndh = H if gva_sum else HV
    dq, dk = torch.empty(Ttot, ndh, K, **f32), torch.empty(Ttot, ndh, K, **f32)   # zeroed by the call if gva_sum
    dv = torch.empty(Ttot, HV, V, dtype=vf.dtype, device=device)   # final: written in the input dtype
    dg, db = torch.empty(Ttot, HV, **f32), torch.empty(Ttot, HV, **f32)
    cu, co = lay.pointers()
    nc = st["gvec"].shape[0]
    ptr = lambda x: x.data_ptr() if x is not None else 0  # noqa: E731
    with torch.cuda.device(device):
        _native.ext().backward_chunk_grads(
            _native.dtype_code(qf.dtype), Ttot, lay.num_seqs, lay.seq_len, cu, co, nc, H, HV, float(scale),
            qf.data_ptr(), kf.data_ptr(), vf.data_ptr(), dof.data_ptr(), st["L"].data_ptr(), bf.data_ptr(),
            ptr(rq), ptr(rk), st["gvec"].data_ptr(), st["hsT"].data_ptr(), st["dhsT"].data_ptr(),
            st["dv_new"].data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), dg.data_ptr(), db.data_ptr(),
            _native.stream_handle(device), int(gva_sum), ptr(st.get("dht")), ptr(st.get("h0")))
    return dq, dk, dv, dg, db


def dv_new_values(dv_new: torch.Tensor) -> torch.Tensor:
    """dv_new ``[Ttot, HV, 128]`` (fp32) from bwd_dstates' planes ``[Ttot, HV, 256]``: per half of
    V, 64 high parts (the input dtype's rounding) then 64 low parts. Returns the high parts - what
    the per-chunk gradients of a full chunk use; the low parts exist only for each sequence's last
    partial chunk (fgdn_backward_dstates)."""
    Ttot, HV, _ = dv_new.shape
    return dv_new.view(Ttot, HV, 2, 2, 64)[:, :, :, 0, :].reshape(Ttot, HV, 128).float()


def sequential_stages(qf, kf, vf, gf, bf, dof, scale, h0, dht, cu_seqlens, want_dh0, lay, H, HV, rq=None, rk=None,
                      problem=None, cp="auto", cp_tolerance=1e-6, cp_exact=True, states=True, prep=None):
    """chunk_prep, the state pass and bwd_dstates on token-packed tensors and the layout ``lay``
    (``_layout.seq_layout(B, T, cu_seqlens)``). The state pass is the forward kernel itself
    (fused_fwd, storing the state at every chunk's start), so it gets the forward's intra-card
    CP (``problem``, ``cp``, ``cp_tolerance`` as for the forward; ``cp_exact=False``: segments that
    cannot warm up restart at their sequence's start / end instead of taking the exact correction).

    qf, kf ``[Ttot, H, 128]`` (raw; normalised by rq, rk when given), vf, dof ``[Ttot, HV, 128]``, gf, bf ``[Ttot, HV]`` fp32,
    h0 / dht ``[N, HV, 128, 128]`` fp32 or None; rq, rk ``[Ttot, H]`` fp32 L2-norm row factors
    (both or neither; q, k raw then). Returns a dict: ``hsT``, ``dhsT``
    ``[NC, HV, V, K]`` (state at each chunk's start / state gradient at its end, transposed),
    ``dv_new`` ``[Ttot, HV, 2 V]`` (high / low planes, see ``dv_new_values``), ``dh0`` (None unless
    ``want_dh0``; ``hsT`` is None and the state pass is skipped when not ``states``: the reverse pass
    needs no states) and chunk_prep's ``L`` and ``gvec`` (``prep``: chunk_prep's outputs
    ``(L, stats, gate_vectors)`` for these inputs, made by the caller; None runs chunk_prep here). hsT, dhsT and dv_new are in qf's dtype, dh0 fp32; ``dht`` (the fp32 d(final
    state) or None) and ``h0`` ride along for the local stage's partial last chunks."""
    device = qf.device
    Ttot = qf.shape[0]
    qf, kf, vf, dof = (_native.tma_ready(x) for x in (qf, kf, vf, dof))
    B = lay.num_seqs if lay.seq_len > 0 else 1
    T = Ttot // B
    if problem is None:   # direct callers (tests, benchmarks): read the lengths once here
        problem = Problem(B, T, H, HV, 128, 128, lay.num_seqs,
                          tuple((cu_seqlens[1:] - cu_seqlens[:-1]).tolist()) if cu_seqlens is not None else None)
    if prep is None:
        prep = ops.chunk_prep(kf.view(B, T, H, -1), bf.view(B, T, HV), gf.view(B, T, HV), cu_seqlens=cu_seqlens,
                              use_qk_l2norm=rk is not None, q=qf.view(B, T, H, -1), scale=scale, layout=lay)
    L, stats, gvec = prep
    L = L.view(Ttot, HV, 64)
    nc = gvec.shape[0]
    dt = _native.dtype_code(qf.dtype)
    cu, co = lay.pointers()
    # States and state gradients in the input dtype, as the GEMMs that use them round them (the
    # forward's v_new = u - w S included). The exceptions need fp32 and take it from elsewhere: a
    # sequence's last partial chunk uses d(final state) and, for a one-chunk sequence, h0 itself;
    # bwd_dstates' first step uses d(final state) unrounded (docs/backward.md, "Precision").
    hsT = torch.empty(nc, HV, 128, 128, dtype=qf.dtype, device=device) if states else None
    dhsT = torch.empty(nc, HV, 128, 128, dtype=qf.dtype, device=device)
    dv_new = torch.empty(Ttot, HV, 256, dtype=qf.dtype, device=device)   # planes: see dv_new_values
    dh0 = torch.empty(lay.num_seqs, HV, 128, 128, dtype=torch.float32, device=device) if want_dh0 else None
    # one CP split (cp.plan) for both passes: the reverse pass warms up after each segment
    seg_chunks = cp_plan.segment_chunks(problem, cp, device)
    # the state pass: the forward kernel's states-only variant (no o) on chunk_prep's outputs above
    if states:
        forward(qf.view(B, T, H, -1), kf.view(B, T, H, -1), vf.view(B, T, HV, -1), gf.view(B, T, HV), bf.view(B, T, HV),
                scale, h0, False, rk is not None, cu_seqlens, problem, cp_tolerance=cp_tolerance, chunk_states=hsT,
                prep=(L, stats, gvec), segment_chunks=seg_chunks, cp_exact=cp_exact, output=False)
    ext = _native.ext()
    stream = _native.stream_handle(device)
    # scratch of the reverse pass: the exact CP correction's (empty without a split) and, for
    # varlen, the per-sequence segment offsets (made there by the kernel the forward uses)
    ws_bytes = ext.backward_dstates_workspace_size(Ttot, lay.num_seqs, lay.seq_len, HV, seg_chunks, not cp_exact)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=device)
    with torch.cuda.device(device):
        # beta, the norm factors and the scale reach the reverse pass through gvec (made above);
        # L is not passed (0): the reverse pass reads the gated WY tile in gvec instead
        ext.backward_dstates(dt, Ttot, lay.num_seqs, lay.seq_len, cu, co, nc, H, HV, qf.data_ptr(),
                             kf.data_ptr(), dof.data_ptr(), 0, gvec.data_ptr(),
                             dht.data_ptr() if dht is not None else 0, dhsT.data_ptr(), dv_new.data_ptr(),
                             dh0.data_ptr() if dh0 is not None else 0, stream, seg_chunks, float(cp_tolerance),
                             stats.data_ptr(), 0, ws.data_ptr(), ws_bytes, not cp_exact)
    return dict(hsT=hsT, dhsT=dhsT, dv_new=dv_new, dh0=dh0, L=L, gvec=gvec, dht=dht, h0=h0)
