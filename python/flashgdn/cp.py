"""Choosing the intra-card context-parallel (CP) split of the forward.

Each CTA of the fused kernel runs one (segment, value head, half of V); a segment after the
first warms up from zero over the chunks before it, or, when the gates do not decay enough, gets
its true incoming state through the exact transition-product correction (docs/context-parallelism.md). The planner picks the number of
chunks per segment from the cost model

    time ~ waves(CTAs) * (chunks per segment + WARMUP_CHUNKS) * CHUNK_US + SEGMENT_US * CTAs / SMs

with waves = ceil(CTAs / SMs). The coefficients were set for an H100 and the two-warpgroup
forward kernel; benchmarks/fit_cp_model.py refits them (forward timings at forced splits, least
squares with one offset per shape); only their ratios matter for the choice. The choice is pure
host arithmetic on shapes (no device sync): for varlen batches it uses the lengths that
validation already read.
"""

from __future__ import annotations

import functools
import math

import torch

# Set when CP landed (d14ac13) for the two-warpgroup fused_fwd of the time. Refit on an H100
# (benchmarks/fit_cp_model.py) for fused_fwd v12 (2026-12-07: 1.68 / 1.66 / 5.8) and v13 (2026-12-08:
# 1.55 / -7.7 / 21, an ill-conditioned fit): both pick the same split as these on all seven shapes,
# the best measured one or within 1% of it, so these stay (docs/perf-notes.md).
CHUNK_US = 1.9          # one 64-token chunk of one CTA
WARMUP_CHUNKS = 2.0     # expected warm-up chunks before a segment (decaying gates)
SEGMENT_US = 0.5        # fixed cost of a segment (look-back, prologue, tail)
MIN_SEGMENT_CHUNKS = 8
MAX_SEGMENTS = 64


@functools.lru_cache(maxsize=None)
def sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _ctas(chunks_per_seq, HV, seg):
    return 2 * HV * sum(max(math.ceil(n / seg), 1) for n in chunks_per_seq)


def model_terms(chunks_per_seq, HV, seg, sms):
    """The cost model's three regressors for a split of ``seg`` chunks per segment:
    (waves * chunks of the longest segment, waves if the split makes segments else 0, CTAs / SMs).
    The predicted time is their dot product with (CHUNK_US, CHUNK_US * WARMUP_CHUNKS, SEGMENT_US);
    benchmarks/fit_cp_model.py fits those three numbers to timings through this same function."""
    ctas = _ctas(chunks_per_seq, HV, seg)
    waves = math.ceil(ctas / sms)
    longest = min(seg, max(chunks_per_seq) if chunks_per_seq else 0)
    split = 1.0 if seg < max(chunks_per_seq, default=0) else 0.0
    return waves * longest, waves * split, ctas / sms


def predicted_us(chunks_per_seq, HV, seg, sms):
    chunk_waves, split_waves, ctas_per_sm = model_terms(chunks_per_seq, HV, seg, sms)
    return (chunk_waves + split_waves * WARMUP_CHUNKS) * CHUNK_US + SEGMENT_US * ctas_per_sm


def check_cp(cp) -> None:
    if not (cp is None or cp == "auto" or (isinstance(cp, int) and not isinstance(cp, bool) and cp >= 1)):
        raise ValueError(f'cp must be "auto", None or a positive int, got {cp!r}')


def check_options(cp, cp_tolerance) -> None:
    """ValueError unless cp is "auto", None or a positive int and cp_tolerance is in [0, 1)."""
    check_cp(cp)
    if isinstance(cp_tolerance, bool) or not isinstance(cp_tolerance, (int, float)) or not 0.0 <= cp_tolerance < 1.0:
        raise ValueError(f"cp_tolerance must be a number in [0, 1), got {cp_tolerance!r}")


def plan(chunks_per_seq: list[int], HV: int, cp, sms: int) -> int:
    """Chunks per segment for fgdn_forward (0 = no split).

    cp: None or 1 -> off; an int n -> each sequence in about n segments; "auto" -> the cost model.
    Memoised: the search over splits costs ~0.1 ms of Python, as much as a short forward's GPU
    time, and a training step asks three times (forward, state pass, reverse pass).
    """
    check_cp(cp)
    return _plan(tuple(chunks_per_seq), HV, cp, sms)


@functools.lru_cache(maxsize=4096)
def _plan(chunks_per_seq: tuple, HV: int, cp, sms: int) -> int:
    longest = max(chunks_per_seq, default=0)
    if cp is None or longest <= 1:
        return 0
    if cp == "auto":
        if 2 * HV * len(chunks_per_seq) >= sms:
            return 0    # the unsplit grid already fills the GPU: no per-call search over splits
        best, best_t = 0, predicted_us(chunks_per_seq, HV, longest, sms)
        for segs in range(2, MAX_SEGMENTS + 1):
            seg = math.ceil(longest / segs)
            if seg < MIN_SEGMENT_CHUNKS:
                break
            t = predicted_us(chunks_per_seq, HV, seg, sms)
            if t < best_t * 0.97:      # split only for a clear predicted gain
                best, best_t = seg, t
        return best
    return 0 if cp == 1 else max(1, math.ceil(longest / cp))


def segment_chunks(p, cp, device: torch.device) -> int:
    """:func:`plan` for a validated problem ``p`` (``_validate.Problem``) on ``device``: the
    forward and both passes of the backward use this one split."""
    chunks = [(n + 63) // 64 for n in p.seq_lens] if p.seq_lens is not None else [(p.T + 63) // 64] * p.B
    index = device.index if device.index is not None else torch.cuda.current_device()
    return plan(chunks, p.HV, cp, sm_count(index))
