"""Random GDN problems, shared by the tests and the benchmarks so both see the same inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import l2_normalize

GATE_KINDS = ("decay", "slow", "zero", "steep")


def make_gates(shape, kind: str, generator: torch.Generator | None, device) -> torch.Tensor:
    """Log-space gates g <= 0 (fp32).

    * ``decay``: logsigmoid(randn) - fast forgetting, about e^-0.8 per token.
    * ``slow``: logsigmoid(randn) / 16 with a quarter of the value heads at g = 0 (no decay at all),
      FlashQLA's benchmark recipe; closest to trained models, hardest for context parallelism.
    * ``zero``: g = 0 everywhere (plain delta rule).
    * ``steep``: ``decay`` with every other value head three times steeper (~150 per 64-token
      chunk): past the kernels' rank-1 gate-factor limit (80 per chunk), so those heads take the
      per-element gate-ratio path while the others stay rank-1.
    """
    if kind == "zero":
        return torch.zeros(shape, dtype=torch.float32, device=device)
    g = F.logsigmoid(torch.randn(shape, generator=generator, dtype=torch.float32, device=device))
    if kind == "decay":
        return g
    if kind == "steep":
        g[..., ::2] *= 3.0
        return g
    if kind == "slow":
        g = g / 16
        HV = shape[-1]
        n_zero = HV // 4
        if n_zero:
            perm = torch.randperm(HV, generator=generator, device=device)[:n_zero]
            g[..., perm] = 0.0
        return g
    raise ValueError(f"gates must be one of {GATE_KINDS}, got {kind!r}")


def make_inputs(B: int, T: int, H: int, HV: int, K: int = 128, V: int = 128, dtype=torch.bfloat16,
                device="cpu", cu_seqlens=None, with_h0: bool = True, gates: str = "decay",
                normalize_k: bool = True, seed: int | None = None) -> dict:
    """FLA-shaped random inputs.

    q ~ randn; k ~ randn, L2-normalised per row unless ``normalize_k`` is False (then use the
    in-kernel L2 norm); v ~ randn; beta = sigmoid(randn); h0 ~ randn (fp32).
    With ``cu_seqlens`` (a list or tensor), B must be 1 and T its last entry.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed)

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, generator=gen, dtype=torch.float32, device=device).to(dt)

    q = randn(B, T, H, K)
    k = torch.randn(B, T, H, K, generator=gen, dtype=torch.float32, device=device)
    k = (l2_normalize(k) if normalize_k else k).to(dtype)
    v = randn(B, T, HV, V)
    g = make_gates((B, T, HV), gates, gen, device)
    if dtype == torch.float64:
        g = g.double()  # fp64 problems are fp64 throughout (the kernels take fp32 g)
    beta = torch.randn(B, T, HV, generator=gen, dtype=torch.float32, device=device).sigmoid().to(dtype)
    if cu_seqlens is not None:
        cu_seqlens = torch.as_tensor(cu_seqlens, dtype=torch.int32, device=device)
        if B != 1 or int(cu_seqlens[-1]) != T:
            raise ValueError("varlen inputs need B == 1 and T == cu_seqlens[-1]")
        N = cu_seqlens.numel() - 1
    else:
        N = B
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    h0 = randn(N, HV, K, V, dt=state_dtype) if with_h0 else None
    return dict(q=q, k=k, v=v, g=g, beta=beta, initial_state=h0, cu_seqlens=cu_seqlens)


def random_seqlens(total: int, n: int, generator: torch.Generator | None = None, min_len: int = 0) -> list[int]:
    """n lengths >= min_len summing to total (mixed, some short)."""
    if n * min_len > total:
        raise ValueError("total too small for n sequences of min_len")
    w = torch.rand(n, generator=generator) ** 2 + 0.05
    extra = total - n * min_len
    lens = [min_len + int(x) for x in (w / w.sum() * extra).floor().tolist()]
    lens[-1] += total - sum(lens)
    return lens


def cu_from_lens(lens) -> list[int]:
    out = [0]
    for n in lens:
        out.append(out[-1] + int(n))
    return out
