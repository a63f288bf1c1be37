"""Exact intra-card context parallelism, in PyTorch: the plan for the kernels' tool (a).

A segment's pass can start from a zero state and be corrected afterwards, exactly, because the
chunk recurrence is affine in the state. Per chunk c (notation of :func:`reference.chunked`)::

    S_{c+1} = T_c S_c + b_c,      T_c = exp(gc_last) I - Kd^T w     (K x K),   b_c = Kd^T u
    o_c     = scale (E Q - P w) S_c + scale P u                      (affine in S_c too)

So with X_c = product of T over the segment's chunks before c (X at the segment start = I):
    S_c(true) = S_c(from zero) + X_c S_in,     o_c(true) = o_c(from zero) + scale (E Q - P w) X_c S_in
and the segment's outgoing state is S_out(zero) + X_end S_in. Pass 1 runs every segment from zero
and accumulates X alongside (in parallel over segments); a short sequential scan over segments
turns the S_out(zero), X_end pairs into every segment's true S_in; pass 2 adds the corrections.
This module is the fp64 statement of that algebra (checked against :func:`reference.chunked`).
"""

from __future__ import annotations

import torch

from .reference import CHUNK, _initial, _prepare, _scatter_outputs, _sequences, chunk_intermediates


def chunked_cp_exact(q, k, v, g, beta, seg_chunks: int, scale=None, initial_state=None, output_final_state=False,
                     use_qk_l2norm_in_kernel=False, cu_seqlens=None, dtype=torch.float64):
    """Same results as :func:`reference.chunked`, computed segment-parallel with the exact
    transition-product correction (segments of ``seg_chunks`` chunks)."""
    B, T = q.shape[:2]
    q, k, v, g, beta, scale = _prepare(q, k, v, g, beta, scale, use_qk_l2norm_in_kernel, dtype)
    HV, K, V = v.shape[2], k.shape[-1], v.shape[-1]
    eye = torch.eye(K, dtype=v.dtype, device=v.device).expand(HV, K, K)
    parts, finals = [], []
    for n, (b, bos, eos) in enumerate(_sequences(T, B, cu_seqlens)):
        nct = (eos - bos + CHUNK - 1) // CHUNK
        segs = [range(s, min(s + seg_chunks, nct)) for s in range(0, nct, seg_chunks)]
        # pass 1 (parallel over segments): from a zero state, with the running transition X
        seg_out = []
        for seg in segs:
            S = v.new_zeros(HV, K, V)
            X = eye.clone()
            rows = []
            for c in seg:
                it = chunk_intermediates(k, v, g, beta, bos, eos, b, c)
                gc, lo, nv = it["gc"], it["lo"], it["n"]
                qc = q.new_zeros(CHUNK, HV, K)
                qc[:nv] = q[b, lo:lo + nv]
                qc = qc.transpose(0, 1)
                P = it["G"] * (qc @ it["kc"].transpose(1, 2))
                v_new = it["u"] - it["w"] @ S
                o0 = scale * (gc.exp()[:, :, None] * (qc @ S) + P @ v_new)
                Co = scale * (gc.exp()[:, :, None] * qc - P @ it["w"])          # d o / d S_c  [HV,64,K]
                rows.append((lo, nv, o0, Co @ X))
                kd = it["kc"] * torch.exp(gc[:, -1:] - gc)[:, :, None]
                Tc = gc[:, -1].exp()[:, None, None] * eye - kd.transpose(1, 2) @ it["w"]
                S = gc[:, -1].exp()[:, None, None] * S + kd.transpose(1, 2) @ v_new
                X = Tc @ X
            seg_out.append((S, X, rows))
        # scan over segments: true incoming states
        S_in = _initial(initial_state, n, v, HV, K, V)
        for S0, X, rows in seg_out:
            for lo, nv, o0, CX in rows:   # pass 2: corrections
                oc = o0 + CX @ S_in
                parts.append((b, lo, oc[:, :nv].transpose(0, 1)))
            S_in = S0 + X @ S_in
        finals.append(S_in)
    o = _scatter_outputs(parts, B, T, v)
    return o, (torch.stack(finals) if output_final_state else None)
