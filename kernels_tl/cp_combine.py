"""cp_combine: pass 2 of the exact intra-card CP correction (docs/context-parallelism.md).

Forward (reverse = 0): every segment that cannot warm up gets its true incoming state from
cp_summary's summaries, walking back from the previous segment to the nearest cut i0 (a segment
whose F is a true outgoing state),

    S_in = F_{j-1} + M_{j-1} (F_{j-2} + M_{j-2} ( ... F_{i0} ))       (Horner, i0 first)

Backward (reverse = 1, bwd_cp_summary's summaries): the same for the state gradient at a
segment's end, walking forward to the nearest cut after it; bwd_cp_summary stores F and M
transposed so that one update serves both directions: X^T <- X^T Ms^T + Fs^T with Ms, Fs as stored.

Grid (2 * segments, HV), 128 threads = one warpgroup; a CTA holds X^T [64 V cols x 128 K] fp32
in registers (this CTA's V half). Per step: M [128 x 128] fp32 -> shared memory as bf16 hi + lo
(M = hi + lo to ~2^-17), X^T likewise in registers, and X^T <- X^T M^T = hi hi + hi lo + lo hi
(three wgmma m64n128k128, fp32 accumulation: about fp32's own accuracy, since a plain bf16 product
would cost 2^-9 of the state), then + F^T. A segment that can warm up (the same look-back test as
fused_fwd's, on the same stats) or the first of its sequence exits at once.
"""

import tilelang
import tilelang.language as T

from common import HEAD_DIM, KIND_RELATIVE, cp_warmup_chunks, locate_item, pdl_wait

NAME = "cp_combine"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}


def build():
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NCG = T.dynamic("NCG")
    NSEG = T.dynamic("NSEG")
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"
    bf = "bfloat16"

    @T.prim_func
    def cp_combine(
        stats: T.Tensor((NCG, HV, 2), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        summ: T.Tensor((NSEG, HV, D, 2 * D), "float32"),
        kinds: T.Tensor((NSEG, HV), "int32"),
        seg_states: T.Tensor((NSEG, HV, D, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        cp_log_tol: T.float32,
        reverse: T.int32,
    ):
        with T.Kernel(2 * num_segs, HV, threads=128) as (bx, hv):
            pdl_wait()
            vh = bx % 2
            seg = bx // 2
            c0 = vh * DV
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            locate_item(seg, seg_chunks, 1, seq_len, num_seqs, cu_seqlens, seg_offsets, loc, 21)
            n = loc[0]
            nct = T.ceildiv(loc[2] - loc[1], 64)
            c_out = loc[3] * seg_chunks
            c_end = T.min(c_out + seg_chunks, nct)
            chunk_base = T.if_then_else(seq_len > 0, n * nct, chunk_offsets[T.max(n, 0)])
            wu_s = T.alloc_shared((2, 64), acc)
            wres = T.alloc_shared((1,), "int32")
            wv = T.alloc_local((8,), acc)
            ix = T.alloc_local((4,), "int32")
            ix[0] = 0
            if reverse == 0:
                if n >= 0 and c_out > 0:
                    cp_warmup_chunks(stats, chunk_base, hv, c_out - 1, -1, c_out, cp_log_tol, tx, wu_s, wres, wv)
                    ix[0] = T.if_then_else(wres[0] > 0, 0, 1)
            else:
                if n >= 0 and c_end < nct:
                    cp_warmup_chunks(stats, chunk_base, hv, c_end, 1, nct - c_end, cp_log_tol, tx, wu_s, wres, wv)
                    ix[0] = T.if_then_else(wres[0] > 0, 0, 1)
            step = T.if_then_else(reverse == 0, -1, 1)
            # segments of this sequence on the walk's side (its first / last one is always a cut)
            ix[3] = T.if_then_else(reverse == 0, loc[3], T.ceildiv(nct, seg_chunks) - 1 - loc[3])
            if ix[0] != 0:
                ix[1] = seg + step
                ix[2] = 0
                for s in T.serial(ix[3]):
                    if ix[2] == 0:
                        if kinds[seg + step * (s + 1), hv] == KIND_RELATIVE:
                            ix[1] = seg + step * (s + 2)
                        else:
                            ix[2] = 1
                i0 = ix[1]
                mh_s = T.alloc_shared((D, D), bf)
                ml_s = T.alloc_shared((D, D), bf)
                X = T.alloc_fragment((DV, D), acc)      # X^T [c][k]
                Xh = T.alloc_fragment((DV, D), bf)
                Xl = T.alloc_fragment((DV, D), bf)
                for c, kk in T.Parallel(DV, D):
                    X[c, kk] = summ[i0, hv, kk, c0 + c]
                for j in T.serial((i0 - seg) * step - 1):
                    src = i0 - step * (j + 1)
                    for r, m in T.Parallel(D, D):     # one global read per element
                        mh_s[r, m] = T.cast(summ[src, hv, r, D + m], bf)
                        ml_s[r, m] = T.cast(summ[src, hv, r, D + m] - T.cast(T.cast(summ[src, hv, r, D + m], bf), acc), bf)
                    for c, kk in T.Parallel(DV, D):
                        Xh[c, kk] = T.cast(X[c, kk], bf)
                    for c, kk in T.Parallel(DV, D):
                        Xl[c, kk] = T.cast(X[c, kk] - T.cast(Xh[c, kk], acc), bf)
                    T.fence_proxy_async()
                    T.sync_threads()
                    # X^T M^T: B = M [r][m] read as N x K
                    T.gemm(Xh, mh_s, X, transpose_B=True, clear_accum=True)
                    T.gemm(Xh, ml_s, X, transpose_B=True)
                    T.gemm(Xl, mh_s, X, transpose_B=True)
                    for c, kk in T.Parallel(DV, D):
                        X[c, kk] = X[c, kk] + summ[src, hv, kk, c0 + c]
                    T.sync_threads()
                for c, kk in T.Parallel(DV, D):
                    seg_states[seg, hv, kk, c0 + c] = X[c, kk]

    return cp_combine


def variants():
    return [("fgdn_cp_combine", dict())]
