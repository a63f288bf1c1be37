"""Public entry point with FLA's signature and semantics."""

from __future__ import annotations

import torch

from . import _validate, cp as cp_plan
from .reference import chunk_gated_delta_rule_reference


def chunk_gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                           beta: torch.Tensor, scale: float | None = None,
                           initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                           use_qk_l2norm_in_kernel: bool = False, cu_seqlens: torch.Tensor | None = None,
                           *, cp="auto", cp_tolerance: float = 1e-6, deterministic: bool = False,
                           save_wy_factors: bool = True):
    r"""Gated delta rule, chunked prefill (FLA-compatible).

    Per value head, with state S in R^{K x V} (fp32)::

        S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = scale * S_t^T q_t

    Args:
        q, k: ``[B, T, H, K]``. v: ``[B, T, HV, V]`` with HV a multiple of H (GVA: value head j
            reads q/k head j // (HV // H)).
        g: ``[B, T, HV]`` log-space gates (<= 0). beta: ``[B, T, HV]`` in (0, 1).
        scale: defaults to ``K ** -0.5``.
        initial_state: ``[N, HV, K, V]`` (N = B, or the number of sequences with cu_seqlens).
        output_final_state: also return the ``[N, HV, K, V]`` fp32 final state.
        use_qk_l2norm_in_kernel: L2-normalise q and k per head (x / sqrt(|x|^2 + 1e-6)) first.
        cu_seqlens: ``[N+1]`` int32/int64 cumulative lengths of sequences packed along T (B == 1).
            Empty sequences are allowed (their final state is their initial state).
        cp: intra-card context parallelism of the GPU forward: ``"auto"`` (cost model, default),
            an int n (cut each sequence into about n segments that run in parallel) or None (off).
        cp_tolerance: a CP segment may start from zero a few chunks early when the gates prove
            the dropped part of its incoming state is below ``cp_tolerance`` times the state's
            norm; otherwise it gets its true incoming state through the exact correction (the
            K x K transition products of the segments before it, computed in parallel). 0
            forbids the early start: every segment takes the exact correction.
        deterministic: backward only, GVA only (HV > H). False (default): each value head adds
            its dq, dk into its q/k head's fp32 rows with float atomics - HV / H times less
            memory for them, but the summation order, hence the last bits, can vary between runs.
            True: per-value-head buffers summed in a fixed order (bitwise reproducible).
        save_wy_factors: training only. True (default): the forward keeps each chunk's WY
            inverse, gate factors and gated WY tiles (about 440 bytes per token and value head,
            held until the backward) and the backward reuses them - about 6% of a training step
            at 8k tokens. False: only the inputs are saved (no extra bytes) and the backward
            recomputes them. The gradients are the same either way (same kernels, same values).

    Returns:
        ``(o, final_state)``: o ``[B, T, HV, V]`` in v's dtype; final_state fp32 or None.

    CUDA tensors run the AOT-compiled Hopper kernels (bf16/fp16, K = V = 128, sm_90), and are
    differentiable: gradients for q, k, v, g, beta and initial_state (given do and, with
    output_final_state, d final_state) come from flashgdn's backward, which recomputes the
    states (see ``save_wy_factors`` for what else is kept).
    CPU tensors run :func:`flashgdn.reference.chunked` (fp32, or fp64 for fp64 inputs): slow,
    meant for checking.
    """
    p = _validate.check_inputs(q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens)
    cp_plan.check_options(cp, cp_tolerance)   # on the CPU path too: a bad option is never ignored
    if not isinstance(save_wy_factors, bool):
        raise TypeError(f"save_wy_factors must be a bool, got {save_wy_factors!r}")
    if q.device.type == "cpu":
        return chunk_gated_delta_rule_reference(q, k, v, g, beta, scale, initial_state, output_final_state,
                                                use_qk_l2norm_in_kernel, cu_seqlens)
    _validate.check_gpu_inputs(q, g, beta, p)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                 for t in (q, k, v, g, beta, initial_state))
    if needs_grad:
        # Training path: same forward kernels, plus a graph node for flashgdn's backward.
        from .autograd import ChunkGatedDeltaRule
        out = ChunkGatedDeltaRule.apply(q, k, v, g, beta, initial_state, scale, output_final_state,
                                        bool(use_qk_l2norm_in_kernel), cu_seqlens, p, cp, cp_tolerance,
                                        bool(deterministic), save_wy_factors)
        return (out[0], out[1]) if output_final_state else (out, None)
    from .forward import forward  # the GPU path imports nothing native until first use
    return forward(q, k, v, g, beta, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel,
                   cu_seqlens, p, cp=cp, cp_tolerance=cp_tolerance)
