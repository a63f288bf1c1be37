"""bwd_dstates: the backward's reverse pass over chunks - the gradient of the state at the end
of every chunk, dv_new of every token and dh0 (reference: flashgdn.reference_bwd.chunk_dstates).

One CTA per (segment, V half, value head): grid (2 * segments, HV), 128 threads = one warpgroup,
synchronous wgmma. The state gradient is held transposed, dS^T [64 V cols x 128 K] fp32, in
registers. Intra-card CP as in the forward (fused_fwd), mirrored: a segment [c_out, c_end) that
does not end its sequence starts w chunks *after* its end from dS = 0, where w is the fewest
chunks over which sum(g) <= ln(tol) with beta |k|^2 <= 2 throughout (chunk_prep's stats): the
dropped gradient then reaches c_end shrunk by tol (dS_c = T_c^T dS_c+1 + ..., |T_c^T| = |T_c|
<= exp(sum g)); without such a w it starts at the sequence's last chunk from d(final state)
(exact). Per chunk c, last to first (rows past the sequence end read as zero):

  dS^T -> dhsT[chunk, hv, V half, :] (fp32; own chunks only)          store from registers
  Q, K [64,128] (raw), dO half [64,64], L, gc, beta, rq, rk -> smem
  (rq, rk: the L2-norm row factors, else 1 - applied as factors, as in the forward)
  Aw = (G * L) diag(beta exp(gc) rk) per element;  -w = -(Aw K)       wgmma m64n128k64
  QK = Q K^T;  P = scale diag(rq) (G * QK) diag(rk) (lower incl. diag) wgmma m64n64k128
  Kd = diag(exp(gc_last - gc) rk) K,  EQ = scale diag(exp(gc) rq) Q   in place in smem
  dv_new^T = dO^T P + dS^T Kd^T                                       wgmma m64n64k64, m64n64k128
  dv_new -> dvnew[token, hv, V half] (fp32, valid rows, own chunks)
  dS^T = exp(gc_last) dS^T + dO^T EQ + dv_new^T (-w)                  wgmma m64n128k64 x 2
After chunk 0 (the segment that owns it): dS^T -> dh0 (fp32).
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, GV_ROWS, GV_GC, cp_warmup_chunks, locate_item, variant_symbol
from common import load_rows, gated_wy_entry

NAME = "bwd_dstates"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}
DTYPES = ("bfloat16", "float16")


def build(dtype: str):
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NST = T.dynamic("NST")     # rows of dht / dh0
    NCG = T.dynamic("NCG")     # chunk rows of gvec / dhsT
    NRT = T.dynamic("NRT")     # rows of rq / rk (Ttot with the L2 norm, else 1)
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"

    @T.prim_func
    def bwd_dstates(
        q: T.Tensor((Ttot, H, D), dtype),
        k: T.Tensor((Ttot, H, D), dtype),
        dout: T.Tensor((Ttot, HV, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        beta: T.Tensor((Ttot, HV), "float32"),
        rq: T.Tensor((NRT, H), "float32"),
        rk: T.Tensor((NRT, H), "float32"),
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        stats: T.Tensor((NCG, HV, 2), "float32"),
        dht: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        dhsT: T.Tensor((NCG, HV, D, D), "float32"),
        dvnew: T.Tensor((Ttot, HV, D), "float32"),
        dh0: T.Tensor((NST, HV, D, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        has_dht: T.int32,
        store_dh0: T.int32,
        has_norm: T.int32,
        scale: T.float32,
        cp_log_tol: T.float32,
    ):
        with T.Kernel(2 * num_segs, HV, threads=128) as (bx, hv):
            seg = bx // 2
            c0 = (bx % 2) * DV
            tx = T.get_thread_binding()
            hk = hv // (HV // H)
            loc = T.alloc_local((6,), "int32")
            locate_item(seg, seg_chunks, 1, seq_len, num_seqs, cu_seqlens, seg_offsets, loc, 21)
            n = loc[0]
            bos = loc[1]
            eos = loc[2]
            nct = T.ceildiv(eos - bos, C)
            c_out = loc[3] * seg_chunks                  # own chunks: [c_out, c_end)
            c_end = T.min(c_out + seg_chunks, nct)
            chunk_base = T.if_then_else(seq_len > 0, T.max(n, 0) * nct, chunk_offsets[T.max(n, 0)])

            # ---- where the reverse pass starts (see the header) ----
            wu_s = T.alloc_shared((2, 64), acc)
            wres = T.alloc_shared((1,), "int32")
            wv = T.alloc_local((3,), acc)
            ix = T.alloc_local((2,), "int32")
            ix[0] = nct - 1                              # last chunk this CTA runs
            if n >= 0 and c_end < nct:
                cp_warmup_chunks(stats, chunk_base, hv, c_end, 1, nct - c_end, cp_log_tol, tx, wu_s, wres, wv)
                ix[0] = T.if_then_else(wres[0] > 0, c_end + wres[0] - 1, nct - 1)
            ix[0] = T.if_then_else(n >= 0, ix[0], c_out - 1)   # past the last item: no chunks
            c_hi = ix[0]
            from_end = c_hi == nct - 1                   # starts at the true end: d(final state)

            q_s = T.alloc_shared((C, D), dtype)
            k_s = T.alloc_shared((C, D), dtype)
            do_s = T.alloc_shared((C, DV), dtype)
            aw_s = T.alloc_shared((C, C), dtype)
            p_s = T.alloc_shared((C, C), dtype)
            w_s = T.alloc_shared((C, D), dtype)
            ds_s = T.alloc_shared((DV, D), dtype)
            dvn_s = T.alloc_shared((DV, C), dtype)
            gc_s = T.alloc_shared((C,), acc)
            b_s = T.alloc_shared((C,), acc)
            rq_s = T.alloc_shared((C,), acc)
            rk_s = T.alloc_shared((C,), acc)
            dst = T.alloc_fragment((DV, D), acc)
            w_f = T.alloc_fragment((C, D), acc)
            qk_f = T.alloc_fragment((C, C), acc)
            dvt_f = T.alloc_fragment((DV, C), acc)

            for i, j in T.Parallel(DV, D):
                dst[i, j] = T.if_then_else(T.And(has_dht > 0, from_end), dht[T.min(T.max(n, 0), NST - 1), hv, j, c0 + i],
                                           0.0)

            for cr in T.serial(T.max(c_hi - c_out + 1, 0)):
                c = c_hi - cr
                own = c < c_end
                t0 = bos + c * C
                nvalid = T.min(C, eos - t0)
                chunk = chunk_base + c
                for i, j in T.Parallel(DV, D):
                    if own:
                        dhsT[chunk, hv, c0 + i, j] = dst[i, j]
                    ds_s[i, j] = T.cast(dst[i, j], dtype)
                for i, j in T.Parallel(C, D):   # q and k in one loop (one shared predicate)
                    q_s[i, j] = T.if_then_else(i < nvalid, q[T.min(t0 + i, Ttot - 1), hk, j], T.cast(0, dtype))
                    k_s[i, j] = T.if_then_else(i < nvalid, k[T.min(t0 + i, Ttot - 1), hk, j], T.cast(0, dtype))
                load_rows(do_s, dout, t0, nvalid, Ttot, hv, c0)
                for i in T.Parallel(C):
                    gc_s[i] = gvec[chunk, hv, GV_GC, i]
                    b_s[i] = T.if_then_else(i < nvalid, beta[T.min(t0 + i, Ttot - 1), hv], 0.0)
                    rq_s[i] = T.if_then_else(has_norm > 0, rq[T.min(t0 + i, NRT - 1), hk], 1.0)
                    rk_s[i] = T.if_then_else(has_norm > 0, rk[T.min(t0 + i, NRT - 1), hk], 1.0)
                T.sync_threads()
                for i, j in T.Parallel(C, C):
                    aw = gated_wy_entry(L, gc_s, b_s, t0, nvalid, Ttot, hv, i, j) * T.exp(gc_s[j]) * rk_s[j]
                    aw_s[i, j] = T.cast(aw, dtype)
                T.sync_threads()
                T.gemm(aw_s, k_s, w_f, clear_accum=True)
                T.gemm(q_s, k_s, qk_f, transpose_B=True, clear_accum=True)
                for i, j in T.Parallel(C, D):
                    w_s[i, j] = T.cast(-w_f[i, j], dtype)
                for i, j in T.Parallel(C, C):
                    p_s[i, j] = T.cast(
                        T.if_then_else(j <= i, qk_f[i, j] * T.exp(T.if_then_else(j <= i, gc_s[i] - gc_s[j], 0.0))
                                       * (scale * rq_s[i] * rk_s[j]), 0.0),
                        dtype)
                T.sync_threads()
                for i, j in T.Parallel(C, D):
                    k_s[i, j] = T.cast(T.cast(k_s[i, j], acc) * (T.exp(gc_s[C - 1] - gc_s[i]) * rk_s[i]), dtype)
                    q_s[i, j] = T.cast(T.cast(q_s[i, j], acc) * (T.exp(gc_s[i]) * scale * rq_s[i]), dtype)
                T.sync_threads()
                T.gemm(do_s, p_s, dvt_f, transpose_A=True, clear_accum=True)
                T.gemm(ds_s, k_s, dvt_f, transpose_B=True)
                for i, j in T.Parallel(DV, C):
                    dvn_s[i, j] = T.cast(dvt_f[i, j], dtype)
                    if T.And(own, j < nvalid):
                        dvnew[t0 + j, hv, c0 + i] = dvt_f[i, j]
                T.sync_threads()
                for i, j in T.Parallel(DV, D):
                    dst[i, j] = dst[i, j] * T.exp(gc_s[C - 1])
                T.gemm(do_s, q_s, dst, transpose_A=True)
                T.gemm(dvn_s, w_s, dst)
                T.sync_threads()

            if store_dh0 > 0 and n >= 0 and c_out == 0:
                for i, j in T.Parallel(DV, D):
                    dh0[T.min(n, NST - 1), hv, j, c0 + i] = dst[i, j]

    return bwd_dstates


def variants():
    return [(variant_symbol(NAME, dt, "float32"), dict(dtype=dt)) for dt in DTYPES]
