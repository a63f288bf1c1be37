"""Argument checks for the public API. Every problem raises TypeError (wrong kind or dtype)
or ValueError (wrong shape or value) with a message that names the argument."""

from __future__ import annotations

from dataclasses import dataclass

import torch

GPU_DTYPES = (torch.bfloat16, torch.float16)
HEAD_DIM = 128


@dataclass(frozen=True)
class Problem:
    B: int
    T: int
    H: int
    HV: int
    K: int
    V: int
    num_seqs: int
    seq_lens: tuple[int, ...] | None   # host copy of the varlen lengths (read once), else None


def _tensor(name, x, ndim):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_inputs(q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens) -> Problem:
    _tensor("q", q, 4)
    _tensor("k", k, 4)
    _tensor("v", v, 4)
    _tensor("g", g, 3)
    _tensor("beta", beta, 3)
    B, T, H, K = q.shape
    if tuple(k.shape) != tuple(q.shape):
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if tuple(v.shape[:2]) != (B, T):
        raise ValueError(f"v must be [B, T, HV, V] with B, T = {B}, {T} (from q), got {tuple(v.shape)}")
    HV, V = v.shape[2], v.shape[3]
    if H == 0 or HV % H != 0:
        raise ValueError(f"v's head count HV={HV} must be a positive multiple of q/k's H={H} (GVA)")
    for name, x in (("g", g), ("beta", beta)):
        if tuple(x.shape) != (B, T, HV):
            raise ValueError(f"{name} must have shape [B, T, HV] = {(B, T, HV)}, got {tuple(x.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    devices = {t.device for t in (q, k, v, g, beta)}
    if initial_state is not None:
        if not isinstance(initial_state, torch.Tensor):
            raise TypeError(f"initial_state must be a torch.Tensor or None, got {type(initial_state).__name__}")
        devices.add(initial_state.device)
    if len(devices) != 1:
        raise ValueError(f"q, k, v, g, beta and initial_state must be on one device, got {sorted(map(str, devices))}")
    if scale is not None and (not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale != scale):
        raise TypeError(f"scale must be a float or None, got {scale!r}")
    if not isinstance(output_final_state, bool):
        raise TypeError(f"output_final_state must be a bool, got {type(output_final_state).__name__}")

    seq_lens = None
    num_seqs = B
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor):
            raise TypeError(f"cu_seqlens must be a torch.Tensor or None, got {type(cu_seqlens).__name__}")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be 1-D with at least 2 entries, got shape {tuple(cu_seqlens.shape)}")
        if cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1 (sequences packed along T), got B={B}")
        bounds = cu_seqlens.tolist()  # the one host read of cu_seqlens per call
        if bounds[0] != 0:
            raise ValueError(f"cu_seqlens must start at 0, got {bounds[0]}")
        if bounds[-1] != T:
            raise ValueError(f"cu_seqlens must end at T={T} (the packed length), got {bounds[-1]}")
        if any(b > a for a, b in zip(bounds[1:], bounds[:-1])):
            raise ValueError("cu_seqlens must be non-decreasing")
        seq_lens = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))
        num_seqs = len(seq_lens)

    if initial_state is not None:
        want = (num_seqs, HV, K, V)
        if tuple(initial_state.shape) != want:
            raise ValueError(f"initial_state must have shape [N, HV, K, V] = {want}, got {tuple(initial_state.shape)}")
        if not initial_state.is_floating_point():
            raise TypeError(f"initial_state must be floating point, got {initial_state.dtype}")
    return Problem(B, T, H, HV, K, V, num_seqs, seq_lens)


def check_gpu_inputs(q, g, beta, p: Problem) -> None:
    """Extra limits of the Hopper kernels."""
    if q.dtype not in GPU_DTYPES:
        raise TypeError(f"the GPU kernels take q/k/v in bfloat16 or float16, got {q.dtype} "
                        "(cast explicitly, or run on CPU tensors for the float32/float64 reference)")
    if p.K != HEAD_DIM or p.V != HEAD_DIM:
        raise ValueError(f"the GPU kernels support head dims K = V = {HEAD_DIM}, got K={p.K}, V={p.V}")
