"""How the packed token axis splits into sequences, as the kernels want it.

Equal-length batches (``cu_seqlens is None``) need no device work at all: the kernels compute
sequence bounds arithmetically. Varlen batches get their int32 ``cu_seqlens`` and
``chunk_offsets`` (prefix sums of ceil(len/64)) built on the device, with no host sync;
the number of chunks is bounded on the host by ``Ttot // 64 + N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK = 64


@dataclass(frozen=True)
class SeqLayout:
    total_tokens: int
    num_seqs: int
    seq_len: int                      # > 0 uniform, 0 varlen
    cu_seqlens: torch.Tensor | None   # int32 [N+1] on the device (varlen)
    chunk_offsets: torch.Tensor | None  # int32 [N+1] on the device (varlen)
    num_chunks: int                   # exact (uniform) or an upper bound (varlen)

    def pointers(self):
        cu = self.cu_seqlens.data_ptr() if self.cu_seqlens is not None else 0
        co = self.chunk_offsets.data_ptr() if self.chunk_offsets is not None else 0
        return cu, co


def seq_layout(B: int, T: int, cu_seqlens: torch.Tensor | None, device: torch.device) -> SeqLayout:
    if cu_seqlens is None:
        return SeqLayout(B * T, B, T, None, None, B * ((T + CHUNK - 1) // CHUNK))
    cu = cu_seqlens.to(device=device, dtype=torch.int32)
    n = cu.numel() - 1
    nchunks = torch.div(cu[1:] - cu[:-1] + (CHUNK - 1), CHUNK, rounding_mode="floor")
    offsets = torch.zeros(n + 1, dtype=torch.int32, device=device)
    torch.cumsum(nchunks, 0, out=offsets[1:])
    return SeqLayout(B * T, n, 0, cu, offsets, (B * T) // CHUNK + n)
