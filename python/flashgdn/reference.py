"""PyTorch reference implementations of the gated delta rule (any device, fp32/fp64).

These are the ground truth that every kernel, test, benchmark and document is judged
against. Two forms compute the same function:

* :func:`naive_recurrence` - token by token, straight from the definition::

      S_t = exp(g_t) (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T,    o_t = scale * S_t^T q_t

* :func:`chunked` - the chunk-64 WY form, written the way the Hopper kernels compute it
  (gate-free inverse, gates restored by the ratio matrix G), so a kernel bug can be
  localised by comparing intermediate quantities with :func:`chunk_intermediates`.

Backward: autograd through :func:`naive_recurrence` (or :func:`chunked`) in fp64.

Shapes follow FLA: q, k ``[B,T,H,K]``; v ``[B,T,HV,V]``; g, beta ``[B,T,HV]``;
initial/final state ``[N,HV,K,V]`` (N = B, or the number of sequences with cu_seqlens).
With ``cu_seqlens`` the batch dimension must be 1 and sequences are packed along T.
"""

from __future__ import annotations

import torch

CHUNK = 64


def _sequences(T: int, B: int, cu_seqlens):
    """Yield (batch index, start, end) of every sequence."""
    if cu_seqlens is None:
        for b in range(B):
            yield b, 0, T
    else:
        bounds = [int(x) for x in cu_seqlens.tolist()]
        for n in range(len(bounds) - 1):
            yield 0, bounds[n], bounds[n + 1]


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise L2 normalisation over the last dim: x / sqrt(sum(x^2) + eps).

    eps sits under the square root, as in FLA's l2norm, so a zero row maps to zero.
    """
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def _prepare(q, k, v, g, beta, scale, use_qk_l2norm, dtype):
    if dtype is not None:
        q, k, v, g, beta = (t.to(dtype) for t in (q, k, v, g, beta))
    if use_qk_l2norm:
        q, k = l2_normalize(q), l2_normalize(k)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    H, HV = q.shape[2], v.shape[2]
    group = HV // H
    # Expand q/k heads to value heads (GVA): value head j reads q/k head j // group.
    q = q.repeat_interleave(group, dim=2)
    k = k.repeat_interleave(group, dim=2)
    return q, k, v, g, beta, scale


def _initial(initial_state, n, v, HV, K, V):
    """Sequence n's starting state in the compute dtype (zero without an initial state)."""
    return initial_state[n].to(v.dtype) if initial_state is not None else v.new_zeros(HV, K, V)


def naive_recurrence(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                     use_qk_l2norm_in_kernel=False, cu_seqlens=None, dtype=None):
    """Token-by-token recurrence. Returns ``(o, final_state or None)``.

    ``dtype`` (e.g. torch.float64) casts every input first; outputs keep that dtype.
    Differentiable with autograd.
    """
    B, T = q.shape[:2]
    q, k, v, g, beta, scale = _prepare(q, k, v, g, beta, scale, use_qk_l2norm_in_kernel, dtype)
    HV, K, V = v.shape[2], k.shape[-1], v.shape[-1]
    parts = []
    finals = []
    for n, (b, bos, eos) in enumerate(_sequences(T, B, cu_seqlens)):
        S = _initial(initial_state, n, v, HV, K, V)
        seq_out = []
        for t in range(bos, eos):
            kt, vt, qt = k[b, t], v[b, t], q[b, t]                       # [HV,K], [HV,V], [HV,K]
            S = S * g[b, t].exp()[:, None, None]
            v_new = beta[b, t][:, None] * (vt - torch.einsum("hkv,hk->hv", S, kt))
            S = S + kt[:, :, None] * v_new[:, None, :]
            seq_out.append(scale * torch.einsum("hkv,hk->hv", S, qt))
        if seq_out:
            parts.append((b, bos, torch.stack(seq_out)))
        finals.append(S)
    o = _scatter_outputs(parts, B, T, v)
    final = torch.stack(finals) if output_final_state else None
    return o, final


def _scatter_outputs(parts, B, T, v):
    """Place per-piece outputs ``(batch, first token, values[n,HV,V])`` into a [B,T,HV,V]
    tensor; rows no piece covers stay zero. index_put keeps autograd intact."""
    o = v.new_zeros(B, T, v.shape[2], v.shape[3])
    if not parts:
        return o
    idx_b = torch.cat([torch.full((x.shape[0],), b, dtype=torch.long) for b, _, x in parts])
    idx_t = torch.cat([torch.arange(t0, t0 + x.shape[0]) for _, t0, x in parts])
    vals = torch.cat([x for _, _, x in parts])
    return o.index_put((idx_b.to(o.device), idx_t.to(o.device)), vals)


def wy_factors(kc: torch.Tensor, bc: torch.Tensor, gc: torch.Tensor) -> dict:
    """The chunk's WY factors, batched over any leading dims: kc ``[..., 64, K]``, bc, gc ``[..., 64]``
    (rows past the sequence zero in kc and bc; gc the chunk-local cumsum of g).

    Returns ``KK = K K^T``, ``L = (I + StrictLower(diag(beta) KK))^-1`` (gate-free),
    ``G = [exp(gc_t - gc_s)]_{s<=t}``, ``M = G * L``, ``Au = M diag(beta)``, ``E = exp(gc)``.
    """
    C = kc.shape[-2]
    eye = torch.eye(C, dtype=kc.dtype, device=kc.device)
    KK = kc @ kc.transpose(-1, -2)
    A = torch.tril(bc[..., :, None] * KK, diagonal=-1)
    L = torch.linalg.solve_triangular(eye + A, eye.expand_as(A).contiguous(), upper=False, unitriangular=True)
    lower = torch.ones(C, C, dtype=torch.bool, device=kc.device).tril()
    diff = gc[..., :, None] - gc[..., None, :]
    G = torch.where(lower, diff, torch.full((), float("-inf"), dtype=diff.dtype, device=diff.device)).exp()
    M = G * L
    return dict(KK=KK, L=L, G=G, M=M, Au=M * bc[..., None, :], E=gc.exp())


def chunk_intermediates(k, v, g, beta, start, end, b, chunk_index):
    """Intermediate quantities of one chunk (already GVA-expanded, normalised inputs).

    Returns a dict with (per value head, chunk padded to 64 rows):
      ``gc``  [HV,64]     chunk-local inclusive cumsum of g (padding rows repeat the last value)
      ``L``   [HV,64,64]  gate-free inverse (I + StrictLower(diag(beta) K K^T))^-1
      ``G``   [HV,64,64]  exp(gc_t - gc_s) for s <= t, else 0
      ``Au``  [HV,64,64]  (G * L) diag(beta)
      ``u``   [HV,64,V]   Au @ V
      ``w``   [HV,64,K]   Au diag(exp(gc)) @ K
      ``valid`` [64] bool
    """
    lo = start + chunk_index * CHUNK
    hi = min(lo + CHUNK, end)
    n = hi - lo
    K, V = k.shape[-1], v.shape[-1]

    def pad(x, width):
        out = x.new_zeros((CHUNK,) + tuple(x.shape[1:]))
        out[:n] = x
        return out

    kc = pad(k[b, lo:hi], K).transpose(0, 1)          # [HV,64,K]
    vc = pad(v[b, lo:hi], V).transpose(0, 1)          # [HV,64,V]
    gcn = pad(g[b, lo:hi], 1).transpose(0, 1)         # [HV,64] (padding rows: g = 0)
    bc = pad(beta[b, lo:hi], 1).transpose(0, 1)       # [HV,64] (padding rows: beta = 0)
    gc = gcn.cumsum(-1)
    f = wy_factors(kc, bc, gc)
    L, G, Au = f["L"], f["G"], f["Au"]
    u = Au @ vc
    w = Au @ (f["E"][..., None] * kc)
    valid = torch.arange(CHUNK, device=k.device) < n
    return dict(gc=gc, L=L, G=G, Au=Au, u=u, w=w, kc=kc, vc=vc, valid=valid, n=n, lo=lo)


def chunked(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
            use_qk_l2norm_in_kernel=False, cu_seqlens=None, dtype=None):
    """Chunk-64 WY form, as the kernels compute it. Same signature/returns as naive_recurrence.

    Per chunk (rows t, columns s, gc = chunk-local cumsum of g, S = state at chunk start)::

        L  = (I + StrictLower(diag(beta) K K^T))^-1          gate-free, no exp overflow
        G  = [exp(gc_t - gc_s)]_{s<=t}                        gate ratios, all <= 1
        Au = (G * L) diag(beta)                               = gated WY inverse times diag(beta)
        u  = Au V ;  w = Au diag(exp(gc)) K
        v_new = u - w S
        o  = scale (diag(exp(gc)) Q S + (G * Q K^T) v_new)   (lower triangle incl. diagonal)
        S' = exp(gc_last) S + (diag(exp(gc_last - gc)) K)^T v_new
    """
    B, T = q.shape[:2]
    q, k, v, g, beta, scale = _prepare(q, k, v, g, beta, scale, use_qk_l2norm_in_kernel, dtype)
    HV, K, V = v.shape[2], k.shape[-1], v.shape[-1]
    finals = []
    parts = []
    for n, (b, bos, eos) in enumerate(_sequences(T, B, cu_seqlens)):
        S = _initial(initial_state, n, v, HV, K, V)
        for c in range((eos - bos + CHUNK - 1) // CHUNK):
            it = chunk_intermediates(k, v, g, beta, bos, eos, b, c)
            nvalid, lo = it["n"], it["lo"]
            gc = it["gc"]
            qc = q.new_zeros(CHUNK, HV, K)
            qc[:nvalid] = q[b, lo:lo + nvalid]
            qc = qc.transpose(0, 1)                                          # [HV,64,K]
            v_new = it["u"] - it["w"] @ S                                     # [HV,64,V]
            P = it["G"] * (qc @ it["kc"].transpose(1, 2))                     # lower incl. diag
            oc = scale * (gc.exp()[:, :, None] * (qc @ S) + P @ v_new)        # [HV,64,V]
            parts.append((b, lo, oc[:, :nvalid].transpose(0, 1)))
            gl = gc[:, -1]
            kd = it["kc"] * torch.exp(gl[:, None] - gc)[:, :, None]
            S = gl.exp()[:, None, None] * S + kd.transpose(1, 2) @ v_new
        finals.append(S)
    o = _scatter_outputs(parts, B, T, v)
    final = torch.stack(finals) if output_final_state else None
    return o, final


def chunk_gated_delta_rule_reference(q, k, v, g, beta, scale=None, initial_state=None,
                                     output_final_state=False, use_qk_l2norm_in_kernel=False,
                                     cu_seqlens=None):
    """The CPU path of the public API: the chunked form in the inputs' precision
    (fp32 for half inputs), outputs cast back to the input dtype. Slow; for checking."""
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    o, final = chunked(q, k, v, g, beta, scale, initial_state, output_final_state,
                       use_qk_l2norm_in_kernel, cu_seqlens, dtype=compute)
    return o.to(v.dtype), (final.float() if final is not None else None)
