"""GPU forward: prepares the inputs the C API wants and runs ``fgdn_forward`` on the current stream."""

from __future__ import annotations

import torch

from . import _native, cp as cp_plan
from ._validate import Problem


def kernel_gates(g: torch.Tensor, beta: torch.Tensor, dtype: torch.dtype):
    """g and beta as the kernels take them: g fp32, beta in the inputs' dtype or fp32; contiguous
    (no copy when they already are)."""
    if beta.dtype not in (dtype, torch.float32):
        beta = beta.to(torch.float32)
    return g.to(torch.float32).contiguous(), beta.contiguous()


def forward(q, k, v, g, beta, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel, cu_seqlens,
            p: Problem, cp="auto", cp_tolerance: float = 1e-6, chunk_states: torch.Tensor | None = None,
            prep: tuple | None = None, segment_chunks: int | None = None, cp_exact: bool = True,
            output: bool = True):
    """The forward on the current stream. For the backward's state pass: ``chunk_states``, a
    tensor ``[num_chunks, HV, V, K]`` in q's dtype (``_layout.seq_layout(...).num_chunks`` rows) that
    receives the state at the start of every chunk, transposed; ``prep``, ``ops.chunk_prep``'s
    ``(L, stats, gate_vectors)`` for these very inputs (beta, scale and norm included), which the
    forward then uses instead of running chunk_prep again; ``segment_chunks``, the CP split
    (``cp.segment_chunks``) when the caller has planned it already (``cp`` is then ignored);
    ``cp_exact=False`` makes segments that cannot warm up restart at their sequence's first chunk
    instead of taking the exact correction (for comparisons; both are exact); ``output=False``
    (only with ``chunk_states``) skips o - no q, P~ or output work, the backward's state pass -
    and returns None for it."""
    _native.require_gpu(q.device)
    device = q.device
    if chunk_states is not None and (chunk_states.dtype != q.dtype or not chunk_states.is_contiguous()):
        raise ValueError(f"chunk_states must be a contiguous {q.dtype} tensor, got {chunk_states.dtype}")
    if not output and chunk_states is None:
        raise ValueError("output=False needs chunk_states (a forward with no output computes nothing)")
    q, k, v = _native.tma_ready(q), _native.tma_ready(k), _native.tma_ready(v)
    g, beta = kernel_gates(g, beta, q.dtype)
    h0 = initial_state.to(torch.float32).contiguous() if initial_state is not None else None
    if scale is None:
        scale = p.K ** -0.5
    o = torch.empty(v.shape, dtype=v.dtype, device=device) if output else None
    ht = torch.empty(p.num_seqs, p.HV, p.K, p.V, dtype=torch.float32, device=device) if output_final_state else None

    total = p.B * p.T
    if cu_seqlens is None:
        # seq_len 0 with no cu_seqlens only happens for T == 0: the C API then just copies h0
        seq_len, cu_ptr, cu32 = p.T, 0, None
    else:
        cu32 = cu_seqlens.to(device=device, dtype=torch.int32)  # kept alive until the launch is enqueued
        seq_len, cu_ptr = 0, cu32.data_ptr()

    cp_segment_chunks = cp_plan.segment_chunks(p, cp, device) if segment_chunks is None else int(segment_chunks)

    ext = _native.ext()
    dt, bdt = _native.dtype_code(q.dtype), _native.dtype_code(beta.dtype)
    L, stats, gvec = (x.data_ptr() for x in prep) if prep is not None else (0, 0, 0)
    nbytes = ext.forward_workspace_size(dt, bdt, total, p.num_seqs, seq_len, p.H, p.HV, cp_segment_chunks, L,
                                        not cp_exact)
    ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device)
    with torch.cuda.device(device):
        ext.forward(dt, bdt, total, p.num_seqs, seq_len, cu_ptr, p.H, p.HV, float(scale),
                    bool(use_qk_l2norm_in_kernel), q.data_ptr(), k.data_ptr(), v.data_ptr(), g.data_ptr(),
                    beta.data_ptr(), h0.data_ptr() if h0 is not None else 0, o.data_ptr() if o is not None else 0,
                    ht.data_ptr() if ht is not None else 0, cp_segment_chunks, float(cp_tolerance), ws.data_ptr(), nbytes,
                    _native.stream_handle(device), chunk_states.data_ptr() if chunk_states is not None else 0,
                    L, stats, gvec, not cp_exact)
    return o, ht
