"""Helpers shared by the TileLang kernel programs (build time only).

Conventions every kernel follows:
* token-major packed layouts: q, k ``[Ttot, H, 128]``; v, o ``[Ttot, HV, 128]``;
  g, beta ``[Ttot, HV]``; B*T is flattened into Ttot, so equal-length batches and varlen
  batches take the same path.
* sequences: ``seq_len > 0`` means every sequence has that length (sequence n starts at
  n*seq_len); ``seq_len == 0`` means varlen, read from ``cu_seqlens`` (int32 [N+1]) and
  ``chunk_offsets`` (int32 [N+1], prefix sums of ceil(len/64)).
* chunk size 64; K = V = 128.
"""

import tilelang.language as T
from tilelang.layout import Fragment

CHUNK = 64
HEAD_DIM = 128

# Kernel dtype names -> short tags used in symbol names.
DTYPE_TAG = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}

# Every (input dtype, beta dtype) pair the library ships: beta either matches the inputs
# or is fp32; g is always fp32.
IO_VARIANTS = [
    ("bfloat16", "bfloat16"),
    ("bfloat16", "float32"),
    ("float16", "float16"),
    ("float16", "float32"),
]


# Rows of the per-(chunk, value head) gate-vector table written by chunk_prep and read by
# fused_fwd (fp32, 64 tokens a row), followed by the forward's WY factors (GV_WY_*, below). For
# bf16 the row factor a_t is folded into the forward's v~ = v_new / a_t; for fp16 it is applied
# to the rows of Au, Aw and P instead (fp16's range).
GV_DEC = 0    # state update column factor: exp(gc_last - gc_t) rk_t valid_t (* a_t, bf16)
GV_OG = 1     # output row factor of the S Q^T term: exp(gc_t) rq_t scale
GV_CU = 2     # column factor cu of Au (chunk_prep folds it in):  b_t beta_t
GV_CW = 3     # column factor cw of Aw: -exp(r) beta_t rk_t  (rank-1) / -exp(gc_t) beta_t rk_t
GV_CP = 4     # column factor of P~: rk_t (bf16) / b_t rk_t (fp16)
GV_RP = 5     # row factor of P~: a_t rq_t scale
GV_RA = 6     # a_t = exp(gc_t - r), r = middle of the chunk's gc range (1 when it decays by > 80)
GV_GC = 7     # gc_t, chunk-local cumsum of g (element-wise fallback)
GV_MISC = 8   # [0] = exp(gc_last), [t > 0] = 1 if the rank-1 gate factors apply, else 0
GV_FWD_ROWS = 9   # the forward (fused_fwd) loads rows 0 .. 8 only
# Rows for the backward's reverse pass (bwd_dstates), independent of the dtype and of the rank-1
# mode; every one is 0 past the sequence end (those rows of a TMA tile belong to the next
# sequence). Written only when chunk_prep also stores L (every call but the forward's own, whose
# table no backward reads).
GV_EG = 9     # exp(gc_t)
GV_BRK = 10   # beta_t rk_t
GV_KF = 11    # exp(gc_last - gc_t) rk_t
GV_RQS = 12   # rq_t scale
GV_RK = 13    # rk_t
GV_TABLE_ROWS = 14   # the fp32 factor rows above (bwd_dstates loads rows 0 .. 13)
# The forward's gated WY factors, also per (chunk, value head), after the factor rows: Au = (G * L)
# diag(cu) and Aw = (G * L) diag(cw), each [64 t][64 s] in the input dtype (G the gate ratios as
# fused_fwd applies them: rank-1 a_t b_s folded into cu / cw, plus a_t on the rows for fp16, or per
# element), so that the forward's prep warpgroup feeds them to its GEMMs straight from shared
# memory. Kernels see this part through a second view of the same memory in the input dtype,
# [chunks, HV, 2 * GV_ROWS, 64]: Au in its rows 2 * GV_WY_AU .. + 63, Aw in 2 * GV_WY_AW .. + 63.
GV_WY_AU = 14   # first fp32 row of Au (32 fp32 rows = 64 rows of 64 two-byte values)
GV_WY_AW = 46   # first fp32 row of Aw
GV_ROWS = 78    # fp32 rows per (chunk, value head) in all: 19.5 KB


# Exact CP correction: what cp_summary / bwd_cp_summary record per (segment, value head) in
# kinds[] and cp_combine reads. A cut's F is a true outgoing state (its own start warmed up, or it
# begins / ends its sequence); a relative segment's F needs the state from before it, through M.
KIND_CUT = 1
KIND_RELATIVE = 2


def aw_over_au(cu, cw):
    """f = cw / cu: Aw = Au diag(f), since chunk_prep forms both WY tiles from one G * L with the
    column factors cu, cw (GV_CU, GV_CW); 0 where cu = 0 (beta = 0, or a row past the sequence end).
    The v14 kernels read Au and this instead of the Aw tile."""
    return T.if_then_else(cu != 0.0, cw / cu, 0.0)


def variant_symbol(kernel: str, dtype: str, beta_dtype: str) -> str:
    return f"fgdn_{kernel}_{DTYPE_TAG[dtype]}_b{DTYPE_TAG[beta_dtype]}"


def acc_transposed_layout(rows: int, cols: int):
    """Fragment layout of X [rows][cols] (one warpgroup) that puts every element where the wgmma
    accumulator of X^T [cols][rows] (m64, n = rows) holds it: thread 32 (r' / 16) + 4 (r' % 8) +
    (c' % 8) / 2 and register 4 (c' / 8) + 2 ((r' % 16) / 8) + c' % 2 for X^T[r'][c'].
    Copying the accumulator into such a fragment is a register copy (the transpose is only an
    index change), and TileLang lowers a copy from it into a whole shared [rows][cols] tile to
    stmatrix.trans - 4 instructions a thread for 64 x 64 bf16 instead of 32 scalar 2-byte stores."""
    assert cols == 64, "one warpgroup's accumulator: 64 rows of X^T"
    return Fragment((rows, cols), forward_fn=lambda r, c: (32 * (c // 16) + 4 * (c % 8) + (r % 8) // 2,
                                                          4 * (r // 8) + 2 * ((c % 16) // 8) + r % 2))


@T.macro
def pdl_wait():
    """First statement of every kernel (before any global memory access). TileLang launches every
    kernel with programmatic dependent launch allowed, so a kernel may be started before the one
    before it in the stream has finished - our own or another library's, which may signal its
    dependents early (griddepcontrol.launch_dependents) - and only griddepcontrol.wait guarantees
    that the predecessor has completed and its writes are visible. Our kernels signal nothing
    early (they end with the implicit trigger at exit): a successor from another TileLang-built
    library is launched the same way and may not wait, so an early signal here could let it read
    our outputs before they are written."""
    T.pdl_sync()


@T.macro
def locate_item(item, seg_chunks, min_items, seq_len, num_seqs, cu_seqlens, item_offsets, loc, search_steps):
    """Map a work item to its sequence. Sequence n has max(ceil(ceil(len_n / 64) / seg_chunks), min_items)
    items; item j of it covers chunks [j * seg_chunks, min((j + 1) * seg_chunks, ceil(len_n / 64))).

    Writes into the int32 local buffer ``loc`` (6 entries): loc[0] = sequence index, or -1
    when the item is past the last one (grids are upper bounds); loc[1] = first token of the
    sequence; loc[2] = end token; loc[3] = item index j within the sequence.

    Uniform lengths (seq_len > 0) use arithmetic; varlen uses ``item_offsets`` (int32 [N+1],
    prefix sums of the per-sequence item counts) and a binary search for the largest n with
    item_offsets[n] <= item (sequences with no items have equal offsets and are skipped).
    """
    if seq_len > 0:
        ips = T.max(T.ceildiv(T.ceildiv(seq_len, CHUNK), seg_chunks), min_items)
        loc[0] = T.if_then_else(item // ips < num_seqs, item // ips, -1)
        loc[1] = (item // ips) * seq_len
        loc[2] = (item // ips) * seq_len + seq_len
        loc[3] = item % ips
    else:
        loc[4] = 0
        loc[5] = num_seqs - 1
        for _ in T.serial(search_steps):
            if loc[4] < loc[5]:
                if item_offsets[(loc[4] + loc[5] + 1) // 2] <= item:
                    loc[4] = (loc[4] + loc[5] + 1) // 2
                else:
                    loc[5] = (loc[4] + loc[5] + 1) // 2 - 1
        loc[0] = T.if_then_else(item < item_offsets[num_seqs], loc[4], -1)
        loc[1] = cu_seqlens[loc[4]]
        loc[2] = cu_seqlens[loc[4] + 1]
        loc[3] = item - item_offsets[loc[4]]


@T.macro
def cp_warmup_chunks(stats, chunk_base, hv, first, step, avail, cp_log_tol, tx, wu_s, wres, wv):
    """Intra-card CP warm-up length (docs/context-parallelism.md). Walks chunks first,
    first + step, ... (at most min(avail, 64) of them; step -1: before a segment, for the forward;
    +1: after it, for the reverse pass) and writes into wres[0] the fewest w such that over those
    w chunks sum(g) <= cp_log_tol and beta |k|^2 <= 2 for every token (chunk_prep's stats), so
    that a pass started there from zero misses at most tol of the true state; -1 if none.
    wu_s: shared [2, 64] fp32; wres: shared [1] int32; wv: local [8] fp32. Syncs the CTA.

    Warp 0 scans the 64 chunks in parallel (two per lane: prefix sums and prefix maxima by
    shuffles, then the smallest qualifying w by a min-reduction) - a serial walk by one thread
    cost every CP kernel ~1-2k cycles before its first chunk. Every kernel that must agree on a
    segment's start (fused_fwd, cp_summary, cp_combine; bwd_dstates, bwd_cp_summary) calls this
    one routine on the same stats, so they sum in the same order and decide alike."""
    if tx < 64:
        wu_s[0, tx] = T.if_then_else(tx < avail, stats[chunk_base + first + step * T.min(tx, avail - 1), hv, 0], 0.0)
        wu_s[1, tx] = T.if_then_else(tx < avail, stats[chunk_base + first + step * T.min(tx, avail - 1), hv, 1], 0.0)
        # denormals to zero here, so that kernels built with and without fast math (flush to
        # zero) sum the same numbers (sums of g <= 0 and maxima of beta |k|^2 >= 0 make no new ones)
        wu_s[0, tx] = T.if_then_else(T.abs(wu_s[0, tx]) < 1.1754944e-38, 0.0, wu_s[0, tx])
        wu_s[1, tx] = T.if_then_else(T.abs(wu_s[1, tx]) < 1.1754944e-38, 0.0, wu_s[1, tx])
    T.sync_threads()
    if tx < 32:
        wv[0] = wu_s[0, 2 * tx]                      # g sums of chunks 2l, 2l + 1
        wv[1] = wu_s[0, 2 * tx + 1]
        wv[2] = wv[0] + wv[1]                        # -> inclusive prefix sum through chunk 2l + 1
        wv[3] = T.max(wu_s[1, 2 * tx], wu_s[1, 2 * tx + 1])   # -> inclusive prefix max
        for d in T.unroll(5):
            wv[4] = T.shfl_up(wv[2], 1 << d)
            wv[5] = T.shfl_up(wv[3], 1 << d)
            wv[2] = wv[2] + T.if_then_else(tx >= (1 << d), wv[4], 0.0)
            wv[3] = T.max(wv[3], T.if_then_else(tx >= (1 << d), wv[5], 0.0))
        wv[5] = T.shfl_up(wv[3], 1)                  # prefix max through chunk 2l - 1
        wv[5] = T.max(T.if_then_else(tx >= 1, wv[5], 0.0), wu_s[1, 2 * tx])   # ... through 2l
        # w = c + 1 for the first chunk c where the sum has reached ln(tol) with every
        # beta |k|^2 <= 2 so far (the max only grows, the sum only falls: the first c decides)
        wv[6] = T.if_then_else(2 * tx < avail and wv[2] - wv[1] <= cp_log_tol and wv[5] <= 2.0,
                               T.cast(2 * tx + 1, "float32"),
                               T.if_then_else(2 * tx + 1 < avail and wv[2] <= cp_log_tol and wv[3] <= 2.0,
                                              T.cast(2 * tx + 2, "float32"), 1000.0))
        for d in T.unroll(5):
            wv[6] = T.min(wv[6], T.shfl_xor(wv[6], 1 << d))
        if tx == 0:
            wres[0] = T.if_then_else(wv[6] < 999.0, T.cast(wv[6], "int32"), -1)
    T.sync_threads()


def ring_barriers(na: int, nb: int):
    """The barriers of the two-warpgroup pipeline that fused_fwd and bwd_dstates share (WG0 the
    state, WG1 the prep and the TMA loads, 128 threads each): ring A (q, k, read by both
    warpgroups: na stages, full after WG1's arrival plus the TMA bytes, empty after all 256
    threads), ring B (WG1's own inputs: nb stages) and the prep -> state hand-off (two stages).
    Returns (fullA, emptyA, fullB, emptyB, pfull, pempty)."""
    return (T.alloc_barrier(arrive_count=[128] * na), T.alloc_barrier(arrive_count=[256] * na),
            T.alloc_barrier(arrive_count=[128] * nb), T.alloc_barrier(arrive_count=[128] * nb),
            T.alloc_barrier(arrive_count=[128, 128]), T.alloc_barrier(arrive_count=[128, 128]))
