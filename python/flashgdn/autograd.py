"""torch.autograd wiring of the GPU path: forward kernels, backward from flashgdn.backward."""

from __future__ import annotations

import torch


class ChunkGatedDeltaRule(torch.autograd.Function):
    """Saves the forward's inputs and, with ``save_wy_factors``, chunk_prep's outputs (the WY
    inverse L, the chunk stats and the gate table with the gated WY tiles: ~440 bytes per token
    and value head, docs/backward.md); the backward recomputes the states, and chunk_prep's
    outputs too when they were not saved."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, initial_state, scale, output_final_state, use_qk_l2norm, cu_seqlens,
                problem, cp, cp_tolerance, deterministic=False, save_wy_factors=True):
        from ._layout import seq_layout
        from .forward import forward, kernel_gates
        # the sequence layout once per step: chunk_prep here and the backward reuse it (varlen:
        # a few small device ops each time it is built)
        B, T = q.shape[:2]
        ctx.layout = seq_layout(B, T, cu_seqlens, q.device)
        g32, beta_k = kernel_gates(g, beta, q.dtype)   # converted once, for chunk_prep and the forward
        prep = None
        if save_wy_factors:
            # The same chunk_prep call the backward would make (L stored too), run once here: the
            # forward reads its outputs instead of running chunk_prep itself, and the backward
            # skips it (storing them costs the forward ~4%; recomputing them cost the backward
            # ~6% of a training step, docs/perf-notes.md)
            from . import ops
            prep = ops.chunk_prep(k, beta_k, g32, cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm, q=q,
                                  scale=scale, layout=ctx.layout)
        o, ht = forward(q, k, v, g32, beta_k, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens,
                        problem, cp=cp, cp_tolerance=cp_tolerance, prep=prep)
        ctx.use_qk_l2norm = use_qk_l2norm
        ctx.has_prep = prep is not None
        ctx.save_for_backward(q, k, v, g, beta, initial_state, *(prep if prep is not None else ()))
        ctx.scale = scale
        ctx.cu_seqlens = cu_seqlens
        ctx.problem, ctx.cp, ctx.cp_tolerance = problem, cp, cp_tolerance
        ctx.deterministic = deterministic
        if ht is None:
            return o
        return o, ht

    @staticmethod
    def backward(ctx, do, dht=None):
        from .backward import backward
        q, k, v, g, beta, initial_state, *prep = ctx.saved_tensors
        want = tuple(ctx.needs_input_grad[:6])
        if not any(want):
            return (None,) * 15
        grads = backward(q, k, v, g, beta, do, dht, ctx.scale, initial_state, ctx.cu_seqlens, want,
                         use_qk_l2norm=ctx.use_qk_l2norm, problem=ctx.problem, cp=ctx.cp,
                         cp_tolerance=ctx.cp_tolerance, deterministic=ctx.deterministic,
                         prep=tuple(prep) if ctx.has_prep else None, layout=ctx.layout)
        return (*grads, None, None, None, None, None, None, None, None, None)
