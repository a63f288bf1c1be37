"""chunk_prep: the gate-free WY inverse of every 64-token chunk, plus chunk statistics.

One CTA per (chunk, value head); 128 threads = one warpgroup, 80 registers (launch bound) and
33.75 KB of shared memory (liveness-merged: the K tile's 16 KB is reused once K K^T is done), so
six CTAs share an SM and hide each other's latencies (the kernel is short and bound by latency
and its 19.5 KB of stores per CTA - 18.25 KB in the forward's own call - not by arithmetic; it
ran four to an SM at 91 registers and 54.7 KB before v9). K K^T is recomputed per value head of
a GVA group (one wgmma; the K tile comes from L2 for the group's other heads: walking the group's
heads in one CTA measured slower, docs/perf-notes.md).

  1. K tile [64,128] -> smem by TMA; beta -> smem; while K is in flight warp 2 forms gc (cumsum
     of g) and warp 3 the q row norms (in-kernel L2 norm only).
  2. KK = K K^T [64,64] fp32, wgmma m64n64k16 x 8. With in-kernel L2 norm,
     rk_i = 1/sqrt(KK_ii + 1e-6) comes free from the diagonal.
  3. A = StrictLower(diag(beta) KK) (scaled by rk_i rk_j), scaled in the fragment once and stored
     only where the inverse reads it: the four 16x16 diagonal blocks and A[16:32, 0:16],
     A[48:64, 32:48] (blk_s), and A[32:64, 0:32] (aba_s).
  4. L = (I + A)^-1, blocked:
     a) four 16x16 diagonal blocks (warps 0-1, a half-warp per block): one lane per column,
        forward substitution in registers on broadcast reads of A; meanwhile warps 2-3 write the
        chunk statistics and the gate vectors (6.)
     b) 16 -> 32: L21 = -D1 (A21 D0) for both pairs, a warp each (2x4 outputs a lane)
     c) 32 -> 64: L_BA = -L_BB (A_BA L_AA)                    tf32 mma.sync, 32x32x32 twice
     Every block is also written, as it is finished, into a bf16 tile of L that is then stored
     row-vectorised (valid rows only).
  5. L -> global [Ttot, HV, 64] in the input dtype (valid rows only: rows past the sequence end
     belong to the next sequence); stats[chunk, hv] = (sum of g, max_i beta_i |k_i|^2).
  6. The chunk's gate vectors gvec[chunk, hv, row, token] (rows in common.py: GV_*), computed
     here once per chunk and value head so that the forward's prep warpgroup only multiplies:
     the factors the forward applies to the rows and columns of P and of its outputs (see
     fused_fwd), and the plain factors the backward's reverse pass uses (bwd_dstates; only when L
     is stored too: the forward's own call skips them).
  7. The forward's gated WY factors Au, Aw (GV_WY_*: the same table, viewed in the input dtype as
     `wy`), formed from L's bf16 tile exactly as fused_fwd formed them itself before. The variant
     `chunk_prep_au` stores Au only (fused_fwd_v14 reads no Aw; build's docstring).

The inverse is gate-free: the forward applies the gates as G * L with G_ts = exp(gc_t - gc_s)
(for lower-triangular X, G * X = Gamma X Gamma^-1), so nothing here can overflow.
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, IO_VARIANTS, locate_item, pdl_wait, variant_symbol
from common import GV_ROWS, GV_WY_AU, GV_WY_AW, GV_DEC, GV_OG, GV_CU, GV_CW, GV_CP, GV_RP, GV_RA, GV_GC, GV_MISC
from common import GV_EG, GV_BRK, GV_KF, GV_RQS, GV_RK

NAME = "chunk_prep"
# No automatic bounds checks: every global access here is in range by construction - grid-indexed
# tables (stats, gvec, wy), TMA (zero fill past the tensor), and token rows (q, beta, g, L) masked
# explicitly by the chunk's valid length, which ends at its sequence's end <= Ttot (cu_seqlens is
# validated on the host). TileLang could not prove the masked rows in range and wrapped each in a
# branch: 8520 SASS instructions with the checks, 3808 without (docs/perf-notes.md).
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False,
                tilelang.PassConfigKey.TL_DISABLE_SAFE_MEMORY_ACCESS: True,
                # liveness-based reuse of shared memory: the K tile is dead after K K^T, and A's
                # blocks, the merge scratch and the small vectors fit in its 16 KB (54.7 -> 33.5 KB)
                tilelang.PassConfigKey.TL_ENABLE_AGGRESSIVE_SHARED_MEMORY_MERGE: True}
# CTAs an SM must hold: the kernel is latency-bound, so residency is its throughput. 6 x (33.75 KB
# + 1 KB static + 1 KB reserved) fits the 228 KB; ptxas fits 6 x 128 threads in 80 registers
# (91 unbounded) with no spills in any build (v9 had 4 bytes of spill in the fp16 builds).
MIN_CTAS_PER_SM = 6
L2NORM_EPS = 1e-6
LOG2E = 1.4426950408889634
# row stride of the blocks of A (floats): 16-byte aligned rows; 20, not 24, so that the 16 -> 32
# merge's eight row-pair reads a warp (rows 2k, stride 2 * BLK_ROW) spread over four bank groups, not two
BLK_ROW = 20
BLK = 16 * BLK_ROW + 16   # block stride: 336 = 16 mod 32 banks
L_PAD = 8       # l_out's row padding (elements)


def build(dtype: str, beta_dtype: str, store_aw: bool = True):
    """store_aw=False: `chunk_prep_au`, the same kernel without the Aw tile (7.), for the inference
    forward's own call with FLASHGDN_FUSED_FWD_V14=1: fused_fwd_v14 and cp_summary_v14, the table's
    only readers then, take Aw as Au diag(cw / cu) (common.aw_over_au)."""
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NC = T.dynamic("NC")          # chunk-grid bound (stats rows)
    NS1 = T.dynamic("NS1")        # number of sequences + 1
    C = CHUNK
    D = HEAD_DIM
    acc = "float32"
    fold_rows = dtype == "bfloat16"

    @T.prim_func
    def chunk_prep(
        k: T.Tensor((Ttot, H, D), dtype),
        beta: T.Tensor((Ttot, HV), beta_dtype),
        g: T.Tensor((Ttot, HV), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        q: T.Tensor((Ttot, H, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        stats: T.Tensor((NC, HV, 2), "float32"),
        gvec: T.Tensor((NC, HV, GV_ROWS, C), "float32"),
        wy: T.Tensor((NC, HV, 2 * GV_ROWS, C), dtype),   # gvec's memory, in the input dtype
        seq_len: T.int32,
        num_seqs: T.int32,
        use_l2norm: T.int32,
        scale: T.float32,
        store_L: T.int32,     # 0: the forward's own call, which reads only stats and the table's forward rows
    ):
        with T.Kernel(NC, HV, threads=128) as (chunk, hv):
            T.annotate_min_blocks_per_sm(MIN_CTAS_PER_SM)
            pdl_wait()
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            locate_item(chunk, 1, 0, seq_len, num_seqs, cu_seqlens, chunk_offsets, loc, 21)
            seq_id = loc[0]
            t0 = loc[1] + loc[3] * C
            nvalid = T.min(loc[2] - t0, C)
            hkl = T.alloc_local((1,), "int32")   # once, in a register (inline, the division
            hkl[0] = hv // (HV // H)              # reappears in every address: the norm loop)
            hk = hkl[0]

            k_s = T.alloc_shared((C, D), dtype)
            kk = T.alloc_fragment((C, C), acc)
            rk_s = T.alloc_shared((C,), acc)
            diag_s = T.alloc_shared((C,), acc)
            b_s = T.alloc_shared((C,), acc)
            # A's blocks, as the inverse reads them: 0..3 the 16x16 diagonal blocks (strictly lower,
            # zeros elsewhere), 4 = A[16:32, 0:16], 5 = A[48:64, 32:48]; rows of BLK_ROW floats
            # (16-byte aligned, row-vectorised reads), blocks BLK floats apart (16 banks apart:
            # two blocks read by one warp never share a bank)
            blk_s = T.alloc_shared((6, BLK), acc)
            aba_s = T.alloc_shared((32, 32), acc)       # A[32:64, 0:32], the 32 -> 64 merge's left factor
            lab_s = T.alloc_shared((2, 32, 32), acc)    # L's 32x32 diagonal blocks L_AA, L_BB (fp32)
            x_s = T.alloc_shared((2, 16, 16), acc)      # 16 -> 32 merge scratch
            y_s = T.alloc_shared((32, 32), acc)
            # L in the output dtype, stored row-vectorised. Rows padded to 72 (144 bytes, 16-byte
            # aligned for the vector reads): with 128-byte rows the merges' stores from their
            # fragments (8 rows x 4 column pairs a warp) all fell in 4 banks, 8-way conflicts
            l_out = T.alloc_shared((C, C + L_PAD), dtype)
            y_f = T.alloc_fragment((32, 32), acc)
            kbar = T.alloc_barrier(arrive_count=[128])
            rk_f = T.alloc_fragment((C,), acc)
            rkc_f = T.alloc_fragment((C,), acc)
            b_f = T.alloc_fragment((C,), acc)
            stat_s = T.alloc_shared((2, 2), acc)
            gc_s = T.alloc_shared((C,), acc)
            rq_s = T.alloc_shared((C,), acc)
            fac_s = T.alloc_shared((3, C), acc)         # cu, cw, a_t: the WY factors' column / row scales
            col = T.alloc_local((16,), acc)
            a4 = T.alloc_local((4,), acc)
            b4 = T.alloc_local((4,), acc)
            x8 = T.alloc_local((8,), acc)
            y4 = T.alloc_local((4,), acc)
            red = T.alloc_local((8,), acc)
            qv = T.alloc_local((8,), dtype)

            if seq_id >= 0:
                # K by TMA. Rows past the sequence end hold the next sequence's keys (or TMA's zero
                # fill): finite, and beta = 0 there zeroes their rows of A - hence, A being strictly
                # lower triangular, their columns too.
                T.tma_copy(k[t0:t0 + C, hk, 0:D], k_s, barrier=kbar[0])
                T.barrier_arrive(kbar[0])
                if tx < C:
                    b_s[tx] = T.if_then_else(tx < nvalid, T.cast(beta[t0 + tx, hv], acc), 0.0)
                else:
                    # while K is in flight (warp 2): gc, the chunk-local inclusive cumsum of g by a
                    # shuffle scan, two tokens a lane (padding tokens have g = 0, so gc stays at the
                    # last valid value), and the chunk's sum of g; (warp 3) the q row norms for the
                    # in-kernel L2 norm, two rows a lane
                    lane = tx - 64
                    if lane < 32:
                        red[4] = T.if_then_else(2 * lane < nvalid, g[t0 + 2 * lane, hv], 0.0)
                        red[5] = red[4] + T.if_then_else(2 * lane + 1 < nvalid, g[t0 + 2 * lane + 1, hv], 0.0)
                        red[6] = red[5]
                        for d in T.unroll(5):
                            red[7] = T.shfl_up(red[6], 1 << d)
                            red[6] = red[6] + T.if_then_else(lane >= (1 << d), red[7], 0.0)
                        gc_s[2 * lane] = red[6] - red[5] + red[4]
                        gc_s[2 * lane + 1] = red[6]
                    else:
                        for h in T.unroll(2):
                            red[4] = 0.0
                            if use_l2norm != 0 and (lane - 32) * 2 + h < nvalid:
                                # 16-byte loads: a row is 16 of them (scalar loads made this
                                # never-taken-by-default branch 256 loads long)
                                for c8 in T.serial(D // 8):
                                    for e in T.vectorized(8):
                                        qv[e] = q[t0 + (lane - 32) * 2 + h, hk, c8 * 8 + e]
                                    for e in T.unroll(8):
                                        red[4] = red[4] + T.cast(qv[e], acc) * T.cast(qv[e], acc)
                            rq_s[(lane - 32) * 2 + h] = T.if_then_else(use_l2norm != 0, T.rsqrt(red[4] + L2NORM_EPS), 1.0)
                T.clear(l_out)
                # of L_AA, L_BB only the upper-right 16x16 blocks must be zero (the tf32 GEMMs read
                # them); everything else is written below
                for p_, i, j in T.Parallel(2, 16, 16):
                    lab_s[p_, i, 16 + j] = 0.0
                T.barrier_wait(kbar[0], 0)
                T.gemm(k_s, k_s, kk, transpose_B=True, clear_accum=True)

                for i, j in T.Parallel(C, C):
                    if i == j:
                        diag_s[i] = kk[i, j]
                if tx < C:
                    rk_s[tx] = T.if_then_else(use_l2norm != 0, T.rsqrt(diag_s[tx] + L2NORM_EPS), 1.0)
                T.copy(rk_s, rk_f)
                T.copy(rk_s, rkc_f)
                T.copy(b_s, b_f)
                # A = StrictLower(diag(beta) KK), scaled once in place (ptxas does not share the
                # products between the predicated stores below: three times the multiplies), then
                # straight from the fragment into the blocks the inverse reads (2560 of its 4096
                # entries; the rest is never read)
                for i in T.Parallel(C):
                    b_f[i] = b_f[i] * rk_f[i]
                for i, j in T.Parallel(C, C):
                    kk[i, j] = kk[i, j] * b_f[i] * rkc_f[j]
                for i, j in T.Parallel(C, C):
                    if i // 16 == j // 16:
                        blk_s[i // 16, (i % 16) * BLK_ROW + j % 16] = T.if_then_else(i > j, kk[i, j], 0.0)
                    if i // 16 == j // 16 + 1 and (i // 16) % 2 == 1:
                        blk_s[4 + i // 32, (i % 16) * BLK_ROW + j % 16] = kk[i, j]
                    if i >= 32 and j < 32:
                        aba_s[i - 32, j] = kk[i, j]
                T.sync_threads()

                if tx < 64:
                    # (a) the four 16x16 diagonal blocks D_bb = (I + A_bb)^-1 (warps 0-1): lane j of
                    #     half-warp bb owns column j, forward substitution in registers; row i of
                    #     A_bb comes as broadcast reads (one word for 16 lanes; the two blocks of a
                    #     warp sit 16 banks apart)
                    bb = tx // 16
                    j = tx % 16
                    for i in T.unroll(16):
                        col[i] = T.if_then_else(i == j, 1.0, 0.0)
                    for i in T.unroll(1, 16):
                        for e in T.unroll(4):
                            red[e] = 0.0
                        # four partial sums: the chain of dependent adds is the solve's latency
                        for m in T.unroll(i):
                            red[m % 4] = red[m % 4] + blk_s[bb, i * BLK_ROW + m] * col[m]
                        # rows above the diagonal (i < j) stay exactly 0 since col[m] = 0 for m < j
                        col[i] = T.if_then_else(i > j, -((red[0] + red[1]) + (red[2] + red[3])), col[i])
                    for i in T.unroll(16):
                        lab_s[bb // 2, (bb % 2) * 16 + i, (bb % 2) * 16 + j] = col[i]
                        l_out[bb * 16 + i, bb * 16 + j] = T.cast(col[i], dtype)
                else:
                    # meanwhile (warps 2-3): chunk statistics (sum of g, max of beta_i |k_i|^2) and
                    # the gate vectors
                    lane = tx - 64
                    red[0] = 0.0
                    if lane < nvalid:
                        red[0] = g[t0 + lane, hv]
                    red[1] = b_s[lane] * diag_s[lane] * rk_s[lane] * rk_s[lane]
                    for s in T.unroll(5):
                        red[0] = red[0] + T.shfl_xor(red[0], 1 << s)
                        red[1] = T.max(red[1], T.shfl_xor(red[1], 1 << s))
                    if lane % 32 == 0:
                        stat_s[0, lane // 32] = red[0]
                        stat_s[1, lane // 32] = red[1]
                    # Gate vectors for the forward (one row each, token = lane). G_ts =
                    # exp(gc_t - gc_s) factors as a_t b_s, a_t = exp(gc_t - r), b_s = exp(r - gc_s), while
                    # the chunk's total decay D is below 80 ("rank-1"; r is the middle of the gc range,
                    # so all factors stay within e^40); otherwise a = b = 1 and the forward forms G
                    # per element.
                    # For bf16 the row factor a_t is folded into v~ = v_new / a_t (see fused_fwd).
                    red[0] = gc_s[lane]
                    # reference r = middle of the chunk's gc range [gc_last, gc_0]: every a_t, b_s
                    # then lies in [e^-D/2, e^D/2] for a chunk decaying by D < 80
                    red[1] = T.if_then_else(gc_s[C - 1] > -80.0, 0.5 * (gc_s[0] + gc_s[C - 1]), red[0])
                    red[2] = T.exp2((red[0] - red[1]) * LOG2E)                                  # a_t
                    if fold_rows:
                        red[3] = red[2]
                    else:
                        red[3] = 1.0
                    gvec[chunk, hv, GV_DEC, lane] = T.if_then_else(
                        lane < nvalid, T.exp2((gc_s[C - 1] - red[0]) * LOG2E) * rk_s[lane] * red[3], 0.0)
                    gvec[chunk, hv, GV_OG, lane] = T.exp2(red[0] * LOG2E) * rq_s[lane] * scale
                    fac_s[0, lane] = T.exp2((red[1] - red[0]) * LOG2E) * b_s[lane]
                    fac_s[1, lane] = -(T.exp2(red[1] * LOG2E) * b_s[lane] * rk_s[lane])
                    fac_s[2, lane] = red[2]
                    gvec[chunk, hv, GV_CU, lane] = fac_s[0, lane]
                    gvec[chunk, hv, GV_CW, lane] = fac_s[1, lane]
                    if fold_rows:
                        gvec[chunk, hv, GV_CP, lane] = rk_s[lane]
                    else:
                        gvec[chunk, hv, GV_CP, lane] = T.exp2((red[1] - red[0]) * LOG2E) * rk_s[lane]
                    gvec[chunk, hv, GV_RP, lane] = red[2] * rq_s[lane] * scale
                    gvec[chunk, hv, GV_RA, lane] = red[2]
                    gvec[chunk, hv, GV_GC, lane] = red[0]
                    gvec[chunk, hv, GV_MISC, lane] = T.if_then_else(
                        lane == 0, T.exp2(gc_s[C - 1] * LOG2E), T.if_then_else(gc_s[C - 1] > -80.0, 1.0, 0.0))
                    # the backward's rows (bwd_dstates): plain factors, masked past the sequence end.
                    # Not for the forward's own call (store_L = 0): its table lives in the forward's
                    # workspace and only fused_fwd / cp_summary read it (rows 0 .. 8): 1.25 KB of
                    # the CTA's 19.5 KB of stores saved
                    if store_L != 0:
                        red[4] = T.if_then_else(lane < nvalid, 1.0, 0.0)
                        gvec[chunk, hv, GV_EG, lane] = T.exp2(red[0] * LOG2E) * red[4]
                        gvec[chunk, hv, GV_BRK, lane] = b_s[lane] * rk_s[lane]
                        gvec[chunk, hv, GV_KF, lane] = T.exp2((gc_s[C - 1] - red[0]) * LOG2E) * rk_s[lane] * red[4]
                        gvec[chunk, hv, GV_RQS, lane] = rq_s[lane] * scale * red[4]
                        gvec[chunk, hv, GV_RK, lane] = rk_s[lane] * red[4]
                T.sync_threads()
                # (b) 16 -> 32 for block pairs p = 0 (blocks 0, 1 -> L_AA), 1 (2, 3 -> L_BB), one
                #     warp each: X = A21 D0, then L21 = -D1 X. Lane: rows r0, r0 + 1, columns
                #     4q .. 4q+3; operand rows come as four-float reads shared by the lanes of a row
                #     pair or a column quad.
                if tx < 64:
                    p = tx // 32
                    r0 = ((tx % 32) // 4) * 2
                    q4 = (tx % 4) * 4
                    for e in T.unroll(8):
                        x8[e] = 0.0
                    for m4 in T.unroll(4):
                        for e in T.vectorized(4):
                            a4[e] = blk_s[4 + p, r0 * BLK_ROW + m4 * 4 + e]
                        for e in T.vectorized(4):
                            b4[e] = blk_s[4 + p, (r0 + 1) * BLK_ROW + m4 * 4 + e]
                        for mm in T.unroll(4):
                            for e in T.vectorized(4):
                                y4[e] = lab_s[p, m4 * 4 + mm, q4 + e]
                            for e in T.unroll(4):
                                x8[e] = x8[e] + a4[mm] * y4[e]
                                x8[4 + e] = x8[4 + e] + b4[mm] * y4[e]
                    for h in T.unroll(2):
                        for e in T.vectorized(4):
                            x_s[p, r0 + h, q4 + e] = x8[h * 4 + e]
                    T.sync_warp()
                    for e in T.unroll(8):
                        x8[e] = 0.0
                    for m4 in T.unroll(4):
                        for e in T.vectorized(4):
                            a4[e] = lab_s[p, 16 + r0, 16 + m4 * 4 + e]
                        for e in T.vectorized(4):
                            b4[e] = lab_s[p, 17 + r0, 16 + m4 * 4 + e]
                        for mm in T.unroll(4):
                            for e in T.vectorized(4):
                                y4[e] = x_s[p, m4 * 4 + mm, q4 + e]
                            for e in T.unroll(4):
                                x8[e] = x8[e] - a4[mm] * y4[e]
                                x8[4 + e] = x8[4 + e] - b4[mm] * y4[e]
                    for h in T.unroll(2):
                        for e in T.vectorized(4):
                            lab_s[p, 16 + r0 + h, q4 + e] = x8[h * 4 + e]
                        for e in T.unroll(4):
                            l_out[p * 32 + 16 + r0 + h, p * 32 + q4 + e] = T.cast(x8[h * 4 + e], dtype)
                T.sync_threads()

                # (c) 32 -> 64 with tf32 tensor cores: L_BA = -L_BB (A_BA L_AA).
                T.gemm(aba_s, lab_s[0, :, :], y_f, clear_accum=True)
                T.copy(y_f, y_s)
                T.gemm(lab_s[1, :, :], y_s, y_f, clear_accum=True)
                for i, j in T.Parallel(32, 32):
                    l_out[32 + i, j] = T.cast(-y_f[i, j], dtype)
                if store_L != 0:
                    for i, j in T.Parallel(C, C):
                        if i < nvalid:
                            L[t0 + i, hv, j] = l_out[i, j]
                if tx == 0:
                    stats[chunk, hv, 0] = stat_s[0, 0] + stat_s[0, 1]
                    stats[chunk, hv, 1] = T.max(stat_s[1, 0], stat_s[1, 1])
                # 7. the forward's gated WY factors Au = (G * L) diag(cu), Aw = (G * L) diag(cw) from the
                #    L tile above, with the products and roundings fused_fwd used to form them
                #    itself: rank-1 chunks take G_ts = a_t b_s with b_s in cu / cw and a_t folded
                #    into v~ (bf16) or applied to the rows (fp16); the others G per element. All 64
                #    rows (this table is per chunk: rows past the sequence end are not shared).
                if gc_s[C - 1] > -80.0:
                    for i, j in T.Parallel(C, C):
                        if fold_rows:
                            wy[chunk, hv, 2 * GV_WY_AU + i, j] = T.cast(T.cast(l_out[i, j], acc) * fac_s[0, j], dtype)
                            if store_aw:
                                wy[chunk, hv, 2 * GV_WY_AW + i, j] = T.cast(T.cast(l_out[i, j], acc) * fac_s[1, j], dtype)
                        else:
                            wy[chunk, hv, 2 * GV_WY_AU + i, j] = T.cast(T.cast(l_out[i, j], acc) * fac_s[2, i] * fac_s[0, j], dtype)
                            if store_aw:
                                wy[chunk, hv, 2 * GV_WY_AW + i, j] = T.cast(T.cast(l_out[i, j], acc) * fac_s[2, i] * fac_s[1, j], dtype)
                else:
                    for i, j in T.Parallel(C, C):
                        wy[chunk, hv, 2 * GV_WY_AU + i, j] = T.cast(
                            T.cast(l_out[i, j], acc) * T.exp2(T.min(gc_s[i] - gc_s[j], 0.0) * LOG2E) * fac_s[0, j], dtype)
                        if store_aw:
                            wy[chunk, hv, 2 * GV_WY_AW + i, j] = T.cast(
                                T.cast(l_out[i, j], acc) * T.exp2(T.min(gc_s[i] - gc_s[j], 0.0) * LOG2E) * fac_s[1, j], dtype)

    return chunk_prep


def variants():
    """(symbol, prim_func builder kwargs) for every shipped variant: `chunk_prep` and, without the Aw
    tile, `chunk_prep_au` (build's docstring), per input / beta dtype."""
    return [(variant_symbol(name, dt, bdt), dict(dtype=dt, beta_dtype=bdt, store_aw=aw))
            for name, aw in ((NAME, True), (NAME + "_au", False)) for dt, bdt in IO_VARIANTS]
