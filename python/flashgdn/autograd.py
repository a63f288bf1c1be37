"""torch.autograd wiring of the GPU path: forward kernels, backward from flashgdn.backward."""

from __future__ import annotations

import torch


class ChunkGatedDeltaRule(torch.autograd.Function):
    """Saves only the forward's inputs; the backward recomputes the states."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, initial_state, scale, output_final_state, use_qk_l2norm, cu_seqlens,
                problem, cp, cp_tolerance, deterministic=False):
        from .forward import forward
        o, ht = forward(q, k, v, g, beta, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens,
                        problem, cp=cp, cp_tolerance=cp_tolerance)
        ctx.use_qk_l2norm = use_qk_l2norm
        ctx.save_for_backward(q, k, v, g, beta, initial_state)
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
        q, k, v, g, beta, initial_state = ctx.saved_tensors
        want = tuple(ctx.needs_input_grad[:6])
        if not any(want):
            return (None,) * 14
        grads = backward(q, k, v, g, beta, do, dht, ctx.scale, initial_state, ctx.cu_seqlens, want,
                         use_qk_l2norm=ctx.use_qk_l2norm, problem=ctx.problem, cp=ctx.cp,
                         cp_tolerance=ctx.cp_tolerance, deterministic=ctx.deterministic)
        return (*grads, None, None, None, None, None, None, None, None)
