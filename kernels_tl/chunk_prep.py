"""chunk_prep: K K^T and the gate-free WY inverse of every 64-token chunk, plus chunk stats.

One CTA per (chunk, q/k head); 128 threads = one warpgroup, no warp specialisation (the kernel
is short, and several CTAs share an SM to overlap each other's loads).

  1. K tile [64,128] -> smem (rows past the sequence end zeroed).
  2. KK = K K^T [64,64] fp32 by wgmma (m64n64k16 x 8), kept in registers for the whole group.
     With in-kernel L2 norm, rk_i = 1/sqrt(KK_ii + 1e-6) comes free from the diagonal.
  3. For every value head of the GVA group (beta differs per value head):
       A = StrictLower(diag(beta) KK) (scaled by rk_i rk_j)            fp32 smem [64,64]
       L = (I + A)^-1, blocked:
         a) four 16x16 diagonal blocks by column forward substitution (64 threads, registers)
         b) 16 -> 32 merge: L21 = -D1 (A21 D0)   (CUDA cores, 4 outputs a thread)
         c) 32 -> 64 merge: L_BA = -L_BB (A_BA L_AA)   (tf32 mma.sync, 32x32x32 twice)
       L -> global [Ttot, HV, 64] in the input dtype (valid rows only);
       stats[chunk, hv] = (sum of g over the chunk, max_i beta_i |k_i|^2) for the CP planner.

The inverse is gate-free: the gated WY inverse is G * L with G_ts = exp(gc_t - gc_s), applied
later in the forward kernel (for lower-triangular X, G * X = Gamma X Gamma^-1). So no exp can
overflow here and this kernel never reads the gates except to sum them.
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, IO_VARIANTS, locate_item, variant_symbol

NAME = "chunk_prep"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}
L2NORM_EPS = 1e-6


def build(dtype: str, beta_dtype: str):
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NC = T.dynamic("NC")          # chunk-grid bound (stats rows)
    NS1 = T.dynamic("NS1")        # number of sequences + 1
    C = CHUNK
    D = HEAD_DIM
    acc = "float32"

    @T.prim_func
    def chunk_prep(
        k: T.Tensor((Ttot, H, D), dtype),
        beta: T.Tensor((Ttot, HV), beta_dtype),
        g: T.Tensor((Ttot, HV), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        L: T.Tensor((Ttot, HV, C), dtype),
        stats: T.Tensor((NC, HV, 2), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        use_l2norm: T.int32,
    ):
        with T.Kernel(NC, H, threads=128) as (chunk, hk):
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            locate_item(chunk, 1, 0, seq_len, num_seqs, cu_seqlens, chunk_offsets, loc, 21)
            seq_id = loc[0]
            bos = loc[1]
            eos = loc[2]
            cis = loc[3]

            k_s = T.alloc_shared((C, D), dtype)
            kk = T.alloc_fragment((C, C), acc)
            rk_s = T.alloc_shared((C,), acc)
            diag_s = T.alloc_shared((C,), acc)
            b_s = T.alloc_shared((C,), acc)
            a_s = T.alloc_shared((C, C + 1), acc)       # A, padded row: column walks are conflict-free
            li_s = T.alloc_shared((C, C + 1), acc)      # L being built
            x16_s = T.alloc_shared((2, 16, 17), acc)    # 16->32 merge scratch
            aba_s = T.alloc_shared((32, 32), acc)
            laa_s = T.alloc_shared((32, 32), acc)
            lbb_s = T.alloc_shared((32, 32), acc)
            y_s = T.alloc_shared((32, 32), acc)
            y_f = T.alloc_fragment((32, 32), acc)
            col = T.alloc_local((16,), acc)
            red = T.alloc_local((2,), acc)

            if seq_id >= 0:
                t0 = bos + cis * C
                nvalid = T.min(eos - t0, C)

                for i, d in T.Parallel(C, D):
                    k_s[i, d] = T.if_then_else(i < nvalid, k[t0 + i, hk, d], T.cast(0, dtype))
                T.gemm(k_s, k_s, kk, transpose_B=True, clear_accum=True)

                for i, j in T.Parallel(C, C):
                    if i == j:
                        diag_s[i] = kk[i, j]
                for i in T.Parallel(C):
                    rk_s[i] = T.if_then_else(use_l2norm != 0, T.rsqrt(diag_s[i] + L2NORM_EPS), 1.0)

                group = HV // H
                for r in T.serial(group):
                    hv = hk * group + r
                    for i in T.Parallel(C):
                        b_s[i] = T.if_then_else(i < nvalid, T.cast(beta[t0 + i, hv], acc), 0.0)
                    for i, j in T.Parallel(C, C):
                        a_s[i, j] = T.if_then_else(i > j, b_s[i] * kk[i, j] * rk_s[i] * rk_s[j], 0.0)
                    T.sync_threads()

                    # (a) diagonal 16x16 blocks: thread tx < 64 solves column j of block bb.
                    if tx < 64:
                        bb = tx // 16
                        j = tx % 16
                        for i in T.unroll(16):
                            col[i] = T.if_then_else(i == j, 1.0, 0.0)
                            for m in T.unroll(i):
                                col[i] -= a_s[bb * 16 + i, bb * 16 + m] * col[m]
                            # rows above the diagonal (i < j) stay exactly 0: col[m] = 0 for m < j
                            li_s[bb * 16 + i, bb * 16 + j] = col[i]
                    # (b) sums of the statistics while the other half waits: warp 2 sums g,
                    #     warp 3 takes the max of beta_i |k_i|^2 (normalised keys if L2 norm).
                    if tx >= 64 and tx < 96:
                        lane = tx - 64
                        red[0] = 0.0
                        for h in T.unroll(2):
                            if lane + 32 * h < nvalid:
                                red[0] += g[t0 + lane + 32 * h, hv]
                        for s in T.unroll(5):
                            red[0] += T.shfl_xor(red[0], 1 << s)
                        if lane == 0:
                            stats[chunk, hv, 0] = red[0]
                    if tx >= 96:
                        lane = tx - 96
                        red[1] = 0.0
                        for h in T.unroll(2):
                            red[1] = T.max(red[1], b_s[lane + 32 * h] * diag_s[lane + 32 * h]
                                           * rk_s[lane + 32 * h] * rk_s[lane + 32 * h])
                        for s in T.unroll(5):
                            red[1] = T.max(red[1], T.shfl_xor(red[1], 1 << s))
                        if lane == 0:
                            stats[chunk, hv, 1] = red[1]
                    T.sync_threads()

                    # (b) 16 -> 32 merge for block pairs (0,1) and (2,3):
                    #     X = A21 D0 ; L21 = -D1 X.   Thread: pair p, row i, 4 columns.
                    p = tx // 64
                    i16 = (tx % 64) // 4
                    c4 = (tx % 4) * 4
                    for jj in T.unroll(4):
                        red[0] = 0.0
                        for m in T.unroll(16):
                            red[0] += a_s[p * 32 + 16 + i16, p * 32 + m] * li_s[p * 32 + m, p * 32 + c4 + jj]
                        x16_s[p, i16, c4 + jj] = red[0]
                    T.sync_threads()
                    for jj in T.unroll(4):
                        red[0] = 0.0
                        for m in T.unroll(16):
                            red[0] += li_s[p * 32 + 16 + i16, p * 32 + 16 + m] * x16_s[p, m, c4 + jj]
                        li_s[p * 32 + 16 + i16, p * 32 + c4 + jj] = -red[0]
                        # the upper-right 16x16 of each 32-block is zero
                        li_s[p * 32 + i16, p * 32 + 16 + c4 + jj] = 0.0
                    T.sync_threads()

                    # (c) 32 -> 64 merge with tf32 tensor cores: L_BA = -L_BB (A_BA L_AA).
                    for i, j in T.Parallel(32, 32):
                        aba_s[i, j] = a_s[32 + i, j]
                        laa_s[i, j] = li_s[i, j]
                        lbb_s[i, j] = li_s[32 + i, 32 + j]
                    T.gemm(aba_s, laa_s, y_f, clear_accum=True)
                    T.copy(y_f, y_s)
                    T.gemm(lbb_s, y_s, y_f, clear_accum=True)

                    # L -> global (valid rows only: rows past the end belong to the next sequence)
                    for i, j in T.Parallel(32, 32):
                        if i + 32 < nvalid:
                            L[t0 + 32 + i, hv, j] = T.cast(-y_f[i, j], dtype)
                    for i, j in T.Parallel(C, C):
                        if i < nvalid and (i < 32 or j >= 32):
                            L[t0 + i, hv, j] = T.cast(T.if_then_else(j >= 32 and i < 32, 0.0, li_s[i, j]), dtype)
                    T.sync_threads()

    return chunk_prep


def variants():
    """(symbol, prim_func builder kwargs) for every shipped variant."""
    return [(variant_symbol(NAME, dt, bdt), dict(dtype=dt, beta_dtype=bdt)) for dt, bdt in IO_VARIANTS]
