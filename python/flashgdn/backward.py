"""GPU backward (v1): chunk_prep and the two sequential passes run as AOT kernels
(kernels_tl/bwd_states.py, kernels_tl/bwd_dstates.py); the per-chunk gradients, which are
independent across chunks, run as batched PyTorch ops (:func:`reference_bwd.chunk_local_grads`
in fp32) until they get their own kernel. See docs/backward.md for the algebra and what is saved.

Nothing but the forward's inputs is saved for the backward: the states are recomputed.
"""

from __future__ import annotations

import torch

from . import _native, ops
from ._layout import seq_layout
from .reference_bwd import chunk_index, chunk_local_grads

# Chunk-heads per batch of the PyTorch local-gradient stage: bounds its temporaries
# (about 40 KB of fp32 per chunk-head and live tensor).
LOCAL_BATCH_CHUNK_HEADS = 1024


def _l2_factor(x: torch.Tensor) -> torch.Tensor:
    """1/sqrt(|x|^2 + 1e-6) per row, fp32 (the forward kernels' in-kernel norm)."""
    return torch.rsqrt(x.float().square().sum(-1) + 1e-6)


def _l2_backward(x: torch.Tensor, r: torch.Tensor, dxn: torch.Tensor) -> torch.Tensor:
    """Gradient through xn = x r, r = (|x|^2 + eps)^-1/2:  dx = r (dxn - xn (xn . dxn))."""
    xn = x.float() * r[..., None]
    return r[..., None] * (dxn - xn * (xn * dxn).sum(-1, keepdim=True))


def backward(q, k, v, g, beta, do, dht, scale, initial_state, cu_seqlens, want, use_qk_l2norm=False):
    """Gradients of the GPU forward. q, k, v, do ``[B, T, ., 128]``, g, beta ``[B, T, HV]``;
    ``want`` = which of (q, k, v, g, beta, initial_state) need a gradient. With ``use_qk_l2norm``
    q and k are raw: the kernels take the norm as row factors (as the forward does) and the
    gradient goes through the norm here. Returns ``(dq, dk, dv, dg, dbeta, dh0)`` with None
    where not wanted."""
    _native.require_gpu(q.device)
    B, T, H, K = q.shape
    HV = v.shape[2]
    Ttot = B * T
    device = q.device
    if scale is None:
        scale = K ** -0.5
    flat = lambda x: x.reshape((Ttot,) + tuple(x.shape[2:]))  # noqa: E731
    qf, kf, vf, dof = (flat(x) for x in (q, k, v, do))
    rq = rk = None
    if use_qk_l2norm:
        rq, rk = _l2_factor(qf).contiguous(), _l2_factor(kf).contiguous()
    gf = flat(g).to(torch.float32).contiguous()
    bf = flat(beta).to(torch.float32).contiguous()
    h0 = initial_state.to(torch.float32).contiguous() if initial_state is not None else None
    dht32 = dht.to(torch.float32).contiguous() if dht is not None else None
    lay = seq_layout(B, T, cu_seqlens, device)
    st = sequential_stages(qf, kf, vf, gf, bf, dof.to(q.dtype), scale, h0, dht32, cu_seqlens, bool(want[5]), lay,
                           H, HV, rq, rk)
    # the local stage gets the normalised rows in fp32: a small q.k must not be lost to bf16
    qn = qf.float() * rq[..., None] if use_qk_l2norm else qf
    kn = kf.float() * rk[..., None] if use_qk_l2norm else kf

    dq, dk, dv, dg, db = local_stage(qn, kn, vf, gf, bf, dof, st, chunk_index(B, T, cu_seqlens, device), scale)
    dq = dq.view(Ttot, H, HV // H, K).sum(2)
    dk = dk.view(Ttot, H, HV // H, K).sum(2)
    if use_qk_l2norm:
        dq, dk = _l2_backward(qf, rq, dq), _l2_backward(kf, rk, dk)
    unflat = lambda x: x.reshape((B, T) + tuple(x.shape[1:]))  # noqa: E731
    res = [unflat(dq).to(q.dtype), unflat(dk).to(k.dtype), unflat(dv).to(v.dtype), unflat(dg).to(g.dtype),
           unflat(db).to(beta.dtype), st["dh0"].to(initial_state.dtype) if st["dh0"] is not None else None]
    return tuple(r if w else None for r, w in zip(res, want))


def local_stage(qn, kn, vf, gf, bf, dof, st, idx, scale):
    """The per-chunk gradients (PyTorch, fp32) over batches of chunks, from sequential_stages'
    outputs ``st``. Returns dq, dk ``[Ttot, HV, K]`` (per value head), dv, dg, dbeta."""
    Ttot, HV, V = vf.shape
    K = qn.shape[-1]
    dev = vf.device
    # one scratch row at the end of each output takes the chunks' padding rows
    outs = [torch.empty(Ttot + 1, HV, K, device=dev), torch.empty(Ttot + 1, HV, K, device=dev),
            torch.empty(Ttot + 1, HV, V, device=dev), torch.empty(Ttot + 1, HV, device=dev),
            torch.empty(Ttot + 1, HV, device=dev)]
    hs, dhs = st["hsT"].transpose(-1, -2), st["dhsT"].transpose(-1, -2)
    step = max(1, LOCAL_BATCH_CHUNK_HEADS // HV)
    for j0 in range(0, idx.num_chunks, step):
        sl = slice(j0, min(j0 + step, idx.num_chunks))
        chunk_local_grads(qn, kn, vf, gf, bf, dof, hs[sl], dhs[sl], st["v_new"], st["dv_new"], idx.slice(sl),
                          scale, dtype=torch.float32, out=outs)
    return tuple(x[:Ttot] for x in outs)


def sequential_stages(qf, kf, vf, gf, bf, dof, scale, h0, dht, cu_seqlens, want_dh0, lay, H, HV, rq=None, rk=None):
    """chunk_prep, bwd_states and bwd_dstates on token-packed tensors and the layout ``lay``
    (``_layout.seq_layout(B, T, cu_seqlens)``).

    qf, kf ``[Ttot, H, 128]`` (raw; normalised by rq, rk when given), vf, dof ``[Ttot, HV, 128]``, gf, bf ``[Ttot, HV]`` fp32,
    h0 / dht ``[N, HV, 128, 128]`` fp32 or None; rq, rk ``[Ttot, H]`` fp32 L2-norm row factors
    (both or neither; q, k raw then). Returns a dict: ``hsT``, ``dhsT``
    ``[NC, HV, V, K]`` (state at each chunk's start / state gradient at its end, transposed),
    ``v_new``, ``dv_new`` ``[Ttot, HV, V]`` and ``dh0`` (None unless ``want_dh0``)."""
    device = qf.device
    Ttot = qf.shape[0]
    qf, kf, vf, dof = (_native.tma_ready(x) for x in (qf, kf, vf, dof))
    B = lay.num_seqs if lay.seq_len > 0 else 1
    T = Ttot // B
    L, _, gvec = ops.chunk_prep(kf.view(B, T, H, -1), bf.view(B, T, HV), gf.view(B, T, HV), cu_seqlens=cu_seqlens,
                                use_qk_l2norm=rk is not None, q=qf.view(B, T, H, -1), layout=lay)
    L = L.view(Ttot, HV, 64)
    nc = gvec.shape[0]
    dt = _native.dtype_code(qf.dtype)
    cu, co = lay.pointers()
    # fp32: the local stage takes dot products of these whose cancellation would expose bf16 rounding
    hsT = torch.empty(nc, HV, 128, 128, dtype=torch.float32, device=device)
    dhsT = torch.empty_like(hsT)
    v_new = torch.empty(vf.shape, dtype=torch.float32, device=device)
    dv_new = torch.empty_like(v_new)
    dh0 = torch.empty(lay.num_seqs, HV, 128, 128, dtype=torch.float32, device=device) if want_dh0 else None
    ext = _native.ext()
    stream = _native.stream_handle(device)
    with torch.cuda.device(device):
        ext.backward_states(dt, Ttot, lay.num_seqs, lay.seq_len, cu, co, nc, H, HV, kf.data_ptr(), vf.data_ptr(),
                            L.data_ptr(), bf.data_ptr(), rk.data_ptr() if rk is not None else 0, gvec.data_ptr(),
                            h0.data_ptr() if h0 is not None else 0,
                            hsT.data_ptr(), v_new.data_ptr(), stream)
        ext.backward_dstates(dt, Ttot, lay.num_seqs, lay.seq_len, cu, co, nc, H, HV, float(scale), qf.data_ptr(),
                             kf.data_ptr(), dof.data_ptr(), L.data_ptr(), bf.data_ptr(),
                             rq.data_ptr() if rq is not None else 0, rk.data_ptr() if rk is not None else 0,
                             gvec.data_ptr(),
                             dht.data_ptr() if dht is not None else 0, dhsT.data_ptr(), dv_new.data_ptr(),
                             dh0.data_ptr() if dh0 is not None else 0, stream)
    return dict(hsT=hsT, dhsT=dhsT, v_new=v_new, dv_new=dv_new, dh0=dh0)
