"""The backward of the chunked gated delta rule, stage by stage, in PyTorch.

Written the way the GPU backward computes it, so each stage can be checked on its own and the
whole can be checked against autograd through :func:`flashgdn.reference.naive_recurrence`:

1. :func:`chunk_states` - the forward state pass again: the state at the start of every chunk
   (``hs``) and ``v_new = u - w S`` of every token. Sequential over chunks.
2. :func:`chunk_dstates` - the reverse pass over chunks: ``dhs`` (the gradient of the state at
   the *end* of every chunk), ``dv_new`` of every token and ``dh0``. Sequential over chunks::

       dv_new = scale P^T dO + Kd dS'          (Kd = diag(exp(gc_last - gc)) K)
       dS     = exp(gc_last) dS' + scale (diag(exp(gc)) Q)^T dO - w^T dv_new

3. :func:`chunk_local_grads` - everything else, independent per chunk (batched here): dq, dk,
   dv, dg, dbeta from the chunk's inputs, ``hs``, ``dhs``, ``v_new`` and ``dv_new``, through the
   WY form (L = (I + A)^-1: dA = -L^T dL L^T) and the gate ratios (dg = reverse cumsum of the
   gradient of the chunk-local cumsum gc).

Tensors here are packed along tokens: q, k ``[Ttot, H, K]``, v, do ``[Ttot, HV, V]``, g, beta
``[Ttot, HV]``; chunk tensors ``[NC, HV, K, V]`` with chunks numbered sequence by sequence (the
kernels' numbering). Inputs are already L2-normalised (the API differentiates the norm with
torch). Notation as in :func:`flashgdn.reference.chunked`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .reference import CHUNK, wy_factors


@dataclass(frozen=True)
class ChunkIndex:
    """Token index of every row of every chunk (chunks numbered sequence by sequence).

    tok ``[NC, 64]`` long (clamped into range), valid ``[NC, 64]`` bool, seq ``[NC]`` long
    (sequence of the chunk), pos ``[NC]`` long (chunk number within its sequence). NC is the
    number of chunks for equal lengths and an upper bound (Ttot // 64 + N) for varlen; the
    chunks past the real ones have no valid row. Built on the device without a host sync.
    """
    tok: torch.Tensor
    valid: torch.Tensor
    seq: torch.Tensor
    pos: torch.Tensor

    @property
    def num_chunks(self) -> int:
        return self.tok.shape[0]


def chunk_index(B: int, T: int, cu_seqlens: torch.Tensor | None, device) -> ChunkIndex:
    rows = torch.arange(CHUNK, device=device)
    if cu_seqlens is None:
        nct = (T + CHUNK - 1) // CHUNK
        j = torch.arange(B * nct, device=device)
        seq, pos = j // nct, j % nct
        lo = seq * T + pos * CHUNK
        hi = seq * T + T
    else:
        cu = cu_seqlens.to(device=device, dtype=torch.long)
        n = cu.numel() - 1
        nch = torch.div(cu[1:] - cu[:-1] + CHUNK - 1, CHUNK, rounding_mode="floor")
        offs = torch.zeros(n + 1, dtype=torch.long, device=device)
        torch.cumsum(nch, 0, out=offs[1:])
        j = torch.arange((B * T) // CHUNK + n, device=device)
        seq = (torch.searchsorted(offs, j, right=True) - 1).clamp(0, max(n - 1, 0))
        pos = j - offs[seq]
        lo = cu[seq] + pos * CHUNK
        hi = torch.where(j < offs[n], cu[seq + 1], lo)
    tok = lo[:, None] + rows[None, :]
    valid = tok < hi[:, None]
    return ChunkIndex(tok.clamp(0, max(B * T - 1, 0)), valid, seq, pos)


def gather_chunks(x: torch.Tensor, idx: ChunkIndex, heads: torch.Tensor | None = None) -> torch.Tensor:
    """x ``[Ttot, h, ...]`` -> ``[NC, HV, 64, ...]`` with zero rows outside the sequence;
    ``heads`` (long [HV]) picks x's head for every value head (GVA)."""
    y = x[idx.tok]                                            # [NC, 64, h, ...]
    if heads is not None:
        y = y[:, :, heads]
    mask = idx.valid.reshape(idx.valid.shape + (1,) * (y.dim() - 2))
    y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return y.transpose(1, 2)


def scatter_chunks(y: torch.Tensor, idx: ChunkIndex, total: int) -> torch.Tensor:
    """Inverse of gather_chunks: ``[NC, HV, 64, ...]`` -> ``[Ttot, HV, ...]`` (valid rows only)."""
    y = y.transpose(1, 2)                                     # [NC, 64, HV, ...]
    out = y.new_zeros((total,) + tuple(y.shape[2:]))
    out[idx.tok[idx.valid]] = y[idx.valid]
    return out


def _heads(H: int, HV: int, device) -> torch.Tensor:
    return torch.arange(HV, device=device) // (HV // H)


def _chunk_u_w(k, v, g, beta, idx: ChunkIndex, dtype):
    """Per chunk: K (of each value head's q/k head), gc, u = Au V and w = Au E K (v_new = u - w S)."""
    H, HV = k.shape[1], v.shape[1]
    kc = gather_chunks(k.to(dtype), idx, _heads(H, HV, k.device))
    gc = gather_chunks(g.to(dtype), idx).cumsum(-1)
    f = wy_factors(kc, gather_chunks(beta.to(dtype), idx), gc)
    return kc, gc, f["Au"] @ gather_chunks(v.to(dtype), idx), f["Au"] @ (f["E"][..., None] * kc)


def chunk_states(k, v, g, beta, idx: ChunkIndex, h0=None, dtype=torch.float64):
    """Stage 1. Returns ``hs [NC, HV, K, V]`` (state at each chunk's start), ``v_new [Ttot, HV, V]``."""
    Ttot, H, K = k.shape
    HV, V = v.shape[1], v.shape[2]
    kc, gc, u, w = _chunk_u_w(k, v, g, beta, idx, dtype)
    decay = (gc[..., -1:] - gc).exp()[..., None] * kc          # Kd
    NC = idx.num_chunks
    hs = torch.zeros(NC, HV, K, V, dtype=dtype, device=k.device)
    vn = torch.zeros_like(u)
    S = None
    for j in range(NC):   # reference only: a host loop over chunks
        if int(idx.pos[j]) == 0:
            n = int(idx.seq[j])
            S = h0[n].to(dtype) if h0 is not None else torch.zeros(HV, K, V, dtype=dtype, device=k.device)
        hs[j] = S
        vn[j] = u[j] - w[j] @ S
        S = gc[j, :, -1].exp()[:, None, None] * S + decay[j].transpose(-1, -2) @ vn[j]
    return hs, scatter_chunks(vn, idx, Ttot)


def chunk_v_new(k, v, g, beta, hs, idx: ChunkIndex, dtype=torch.float64):
    """``v_new = u - w S`` of every token ``[Ttot, HV, V]`` for given chunk-start states ``hs
    [NC, HV, K, V]`` - what the local stage recomputes from the states it is handed (for
    judging it on states other than the exact ones)."""
    _, _, u, w = _chunk_u_w(k, v, g, beta, idx, dtype)
    S = torch.where(idx.valid[:, :1, None, None], hs.to(dtype), torch.zeros((), dtype=dtype, device=hs.device))
    return scatter_chunks(u - w @ S, idx, k.shape[0])


def chunk_dstates(q, k, g, beta, do, idx: ChunkIndex, scale: float, num_seqs: int, dht=None,
                  dtype=torch.float64):
    """Stage 2. Returns ``dhs [NC, HV, K, V]`` (gradient of the state at each chunk's end),
    ``dv_new [Ttot, HV, V]`` and ``dh0 [N, HV, K, V]``."""
    Ttot, H, K = k.shape
    HV, V = do.shape[1], do.shape[2]
    heads = _heads(H, HV, k.device)
    qc = gather_chunks(q.to(dtype), idx, heads)
    kc = gather_chunks(k.to(dtype), idx, heads)
    doc = gather_chunks(do.to(dtype), idx)
    gc = gather_chunks(g.to(dtype), idx).cumsum(-1)
    bc = gather_chunks(beta.to(dtype), idx)
    f = wy_factors(kc, bc, gc)
    G, Au, E = f["G"], f["Au"], f["E"]
    w = Au @ (E[..., None] * kc)
    P = G * (qc @ kc.transpose(-1, -2))
    decay = (gc[..., -1:] - gc).exp()[..., None] * kc
    eq = scale * E[..., None] * qc
    NC = idx.num_chunks
    dhs = torch.zeros(NC, HV, K, V, dtype=dtype, device=k.device)
    dvn = torch.zeros_like(doc)
    dh0 = torch.zeros(num_seqs, HV, K, V, dtype=dtype, device=k.device)
    if dht is not None:
        dh0.copy_(dht.to(dtype))    # empty sequences pass d(final state) straight through
    dS = None
    for j in reversed(range(NC)):
        if not bool(idx.valid[j, 0]):
            continue
        n = int(idx.seq[j])
        last = j + 1 >= NC or int(idx.pos[j + 1]) == 0 or not bool(idx.valid[j + 1, 0])
        if last:
            dS = dht[n].to(dtype) if dht is not None else torch.zeros(HV, K, V, dtype=dtype, device=k.device)
        dhs[j] = dS
        dvn[j] = scale * P[j].transpose(-1, -2) @ doc[j] + decay[j] @ dS
        dS = gc[j, :, -1].exp()[:, None, None] * dS + eq[j].transpose(-1, -2) @ doc[j] \
            - w[j].transpose(-1, -2) @ dvn[j]
        if int(idx.pos[j]) == 0:
            dh0[n] = dS
    return dhs, scatter_chunks(dvn, idx, Ttot), dh0


def chunk_local_grads(q, k, v, g, beta, do, hs, dhs, v_new, dv_new, idx: ChunkIndex, scale: float,
                      dtype=torch.float64):
    """Stage 3, batched over the chunks of ``idx`` (``hs``/``dhs`` hold those chunks). Returns
    dq, dk ``[Ttot, HV, K]`` (per value head: the caller sums each GVA group), dv ``[Ttot, HV, V]``,
    dg, dbeta ``[Ttot, HV]``."""
    Ttot, H, K = k.shape
    HV = v.shape[1]
    heads = _heads(H, HV, k.device)
    Q = gather_chunks(q.to(dtype), idx, heads)
    Kc = gather_chunks(k.to(dtype), idx, heads)
    Vc = gather_chunks(v.to(dtype), idx)
    dO = gather_chunks(do.to(dtype), idx)
    VN = gather_chunks(v_new.to(dtype), idx)
    dVN = gather_chunks(dv_new.to(dtype), idx)
    gc = gather_chunks(g.to(dtype), idx).cumsum(-1)
    bc = gather_chunks(beta.to(dtype), idx)
    # chunks past the real ones (varlen bound) hold no valid row and unwritten states
    real = idx.valid[:, :1, None, None]
    S = torch.where(real, hs.to(dtype), torch.zeros((), dtype=dtype, device=hs.device))
    dSn = torch.where(real, dhs.to(dtype), torch.zeros((), dtype=dtype, device=hs.device))
    tr = lambda x: x.transpose(-1, -2)  # noqa: E731

    f = wy_factors(Kc, bc, gc)
    KK, L, G, M, Au, E = f["KK"], f["L"], f["G"], f["M"], f["Au"], f["E"]
    QK = Q @ tr(Kc)
    # o = scale (E Q S + (G * Q K^T) v_new)
    dP = scale * (dO @ tr(VN))                                 # d(G * QK), lower incl. diagonal
    dQK = G * dP
    dq = scale * E[..., None] * (dO @ tr(S)) + dQK @ Kc
    dk = tr(dQK) @ Q
    dG = dP * QK
    dgc = (dO * (scale * E[..., None] * (Q @ S))).sum(-1)
    # S' = exp(gl) S + Kd^T v_new, Kd = diag(exp(gl - gc)) K
    gl = gc[..., -1:]
    decay = (gl - gc).exp()
    dKd = VN @ tr(dSn)
    dk = dk + decay[..., None] * dKd
    t_kd = (dKd * decay[..., None] * Kc).sum(-1)
    dgc = dgc - t_kd
    dgl = t_kd.sum(-1) + gl[..., 0].exp() * (S * dSn).sum((-1, -2))
    # v_new = u - w S ; u = Au V ; w = Au E K
    dw = -(dVN @ tr(S))
    EK = E[..., None] * Kc
    dAu = dVN @ tr(Vc) + dw @ tr(EK)
    dv = tr(Au) @ dVN
    dEK = tr(Au) @ dw
    dk = dk + E[..., None] * dEK
    dgc = dgc + (dEK * EK).sum(-1)
    # Au = (G * L) diag(beta) ; L = (I + A)^-1 ; A = StrictLower(diag(beta) K K^T)
    dM = dAu * bc[..., None, :]
    dbeta = (dAu * M).sum(-2)
    dG = dG + dM * L
    dL = dM * G
    dA = torch.tril(-(tr(L) @ dL @ tr(L)), diagonal=-1)
    dbeta = dbeta + (dA * KK).sum(-1)
    dk = dk + bc[..., None] * (dA @ Kc) + tr(dA) @ (bc[..., None] * Kc)
    # gate ratios G_ts = exp(gc_t - gc_s); gc = chunk-local cumsum of g
    dGG = dG * G
    dgc = dgc + dGG.sum(-1) - dGG.sum(-2)
    dgc[..., -1] += dgl
    dg = dgc.flip(-1).cumsum(-1).flip(-1)
    return tuple(scatter_chunks(x, idx, Ttot) for x in (dq, dk, dv, dg, dbeta))


def group_sum(x: torch.Tensor, H: int) -> torch.Tensor:
    """[Ttot, HV, K] per value head -> [Ttot, H, K]: sum over each GVA group."""
    Ttot, HV, K = x.shape
    return x.view(Ttot, H, HV // H, K).sum(2)


def backward(q, k, v, g, beta, do, scale=None, initial_state=None, dht=None, cu_seqlens=None,
             dtype=torch.float64):
    """The three stages composed, on FLA-shaped tensors (q, k already normalised).
    Returns ``dq, dk, dv, dg, dbeta, dh0`` in ``dtype`` (dh0 is None without an initial state)."""
    B, T, H, K = q.shape
    if scale is None:
        scale = K ** -0.5
    idx = chunk_index(B, T, cu_seqlens, q.device)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    flat = lambda x: x.reshape((B * T,) + tuple(x.shape[2:]))  # noqa: E731
    qf, kf, vf, gf, bf, dof = map(flat, (q, k, v, g, beta, do))
    hs, vn = chunk_states(kf, vf, gf, bf, idx, initial_state, dtype)
    dhs, dvn, dh0 = chunk_dstates(qf, kf, gf, bf, dof, idx, scale, N, dht, dtype)
    dq, dk, dv, dg, db = chunk_local_grads(qf, kf, vf, gf, bf, dof, hs, dhs, vn, dvn, idx, scale, dtype)
    unflat = lambda x: x.reshape((B, T) + tuple(x.shape[1:]))  # noqa: E731
    return (unflat(group_sum(dq, H)), unflat(group_sum(dk, H)), unflat(dv), unflat(dg), unflat(db),
            dh0 if initial_state is not None else None)
