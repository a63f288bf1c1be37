"""Low-level GPU ops: single kernel stages on FLA-shaped tensors, for tests and experiments.

The public forward does not go through here: it makes one ``fgdn_forward`` call, which runs
the stages itself. Tests use these to check each stage against :mod:`flashgdn.reference`.
"""

from __future__ import annotations

import torch

from . import _native
from ._layout import seq_layout

# Rows of chunk_prep's gate-vector table: FGDN_GATE_VECTOR_ROWS in flashgdn.h, GV_ROWS in
# kernels_tl/common.py (tests/test_package.py checks the three agree).
GATE_VECTOR_ROWS = 78


def chunk_prep(k: torch.Tensor, beta: torch.Tensor, g: torch.Tensor, cu_seqlens: torch.Tensor | None = None,
               use_qk_l2norm: bool = False, q: torch.Tensor | None = None, scale: float | None = None,
               out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, layout=None):
    """Gate-free WY inverse of every 64-token chunk.

    Args: k ``[B,T,H,128]`` (bf16/fp16), beta ``[B,T,HV]`` (k's dtype or fp32),
    g ``[B,T,HV]`` fp32, optional int ``cu_seqlens`` ``[N+1]`` (then B == 1).

    Returns ``(L, stats, gate_vectors)``: L ``[B,T,HV,64]`` in k's dtype, where token t's row is
    its row of its chunk's ``(I + StrictLower(diag(beta) K K^T))^-1`` (chunks start at each
    sequence's first token); stats ``[num_chunks, HV, 2]`` fp32 = (sum of g over the chunk,
    max of beta_t |k_t|^2) with chunks numbered sequence by sequence (rows past the number
    of real chunks are unspecified); gate vectors ``[num_chunks, HV, GATE_VECTOR_ROWS, 64]`` fp32 (the fused
    forward's per-token factors, then its gated WY factor tiles in k's dtype stored in the fp32 rows'
    bytes; rows as in kernels_tl/common.py GV_*; q is needed with ``use_qk_l2norm``). ``out`` supplies the three buffers (tests poison them); ``layout`` a
    ``_layout.seq_layout`` of the same (B, T, cu_seqlens) already built by the caller.
    """
    _native.require_gpu(k.device)
    B, T, H, K = k.shape
    HV = beta.shape[2]
    lay = layout if layout is not None else seq_layout(B, T, cu_seqlens, k.device)
    k = _native.tma_ready(k)
    beta = beta.contiguous()
    g = g.contiguous()
    if use_qk_l2norm and q is None:
        raise ValueError("q is needed with use_qk_l2norm")
    if q is not None:
        q = q.contiguous()
    if scale is None:
        scale = K ** -0.5
    nc = max(lay.num_chunks, 1)
    if out is None:
        L = torch.empty(B, T, HV, 64, dtype=k.dtype, device=k.device)
        stats = torch.empty(nc, HV, 2, dtype=torch.float32, device=k.device)
        gvec = torch.empty(nc, HV, GATE_VECTOR_ROWS, 64, dtype=torch.float32, device=k.device)
    else:
        L, stats, gvec = out
        if (gvec.shape[0] < lay.num_chunks or gvec.shape[1:] != (HV, GATE_VECTOR_ROWS, 64)
                or gvec.dtype != torch.float32 or not gvec.is_contiguous() or gvec.data_ptr() % 16):
            raise ValueError(f"out[2] must be a contiguous, 16-byte aligned float32 tensor "
                             f"[>= {lay.num_chunks}, {HV}, {GATE_VECTOR_ROWS}, 64]")
        if L.shape != (B, T, HV, 64) or L.dtype != k.dtype or not L.is_contiguous():
            raise ValueError(f"out[0] must be a contiguous {k.dtype} tensor of shape {(B, T, HV, 64)}")
        if (stats.shape[0] < lay.num_chunks or stats.shape[1:] != (HV, 2) or stats.dtype != torch.float32
                or not stats.is_contiguous()):
            raise ValueError(f"out[1] must be a contiguous float32 tensor [>= {lay.num_chunks}, {HV}, 2]")
    cu, co = lay.pointers()
    with torch.cuda.device(k.device):
        _native.ext().chunk_prep(
            _native.dtype_code(k.dtype), _native.dtype_code(beta.dtype), lay.total_tokens, lay.num_seqs,
            lay.seq_len, cu, co, lay.num_chunks, H, HV, bool(use_qk_l2norm), float(scale),
            q.data_ptr() if q is not None else 0, k.data_ptr(), beta.data_ptr(),
            g.data_ptr(), L.data_ptr(), stats.data_ptr(), gvec.data_ptr(), _native.stream_handle(k.device))
    return L, stats, gvec
