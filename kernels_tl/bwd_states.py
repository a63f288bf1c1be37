"""bwd_states: the backward's forward state pass - the state at the start of every chunk and
v_new of every token, for the local gradient stage (reference: flashgdn.reference_bwd.chunk_states).

One CTA per (sequence, V half, value head): grid (2 * N, HV), 128 threads = one warpgroup,
synchronous (no warp specialisation, no TMA: v1 of the backward, correctness first).
The state is held transposed, S^T [64 V cols x 128 K] fp32, in the warpgroup's registers.
Per chunk c (64 tokens, rows past the sequence end read as zero):

  S^T -> hsT[chunk, hv, V half, :] (fp32: the local gradients take dot products of it whose
         cancellation would expose bf16 rounding)                    store from registers
  K [64,128], V half [64,64], L [64,64] (chunk_prep's gate-free inverse), gc, beta, rk -> smem
  Au = (G * L) diag(beta), Aw = Au diag(exp(gc) rk)   per element (G_ts = exp(gc_t - gc_s) <= 1)
  (rk_t = 1/sqrt(|k_t|^2 + eps) with the L2 norm, else 1: K stays raw in smem and the norm
  rides on the factors, so a small q.k is not lost to rounding normalised rows to bf16)
  -w    = -(Aw K)                                     wgmma m64n128k64
  v_new^T = V^T Au^T + S^T (-w)^T                     wgmma m64n64k64 (A, B transposed), m64n64k128
  v_new -> vnew[token, hv, V half] (fp32, valid rows)
  S^T  = exp(gc_last) S^T + v_new^T (diag(exp(gc_last - gc) rk) K)   wgmma m64n128k64
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, GV_ROWS, GV_GC, variant_symbol
from common import load_rows, gated_wy_entry

NAME = "bwd_states"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}
DTYPES = ("bfloat16", "float16")


def build(dtype: str):
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NST = T.dynamic("NST")     # rows of h0 (sequences, or 1 when unused)
    NCG = T.dynamic("NCG")     # chunk rows of gvec / hsT
    NRT = T.dynamic("NRT")     # rows of rk (Ttot with the L2 norm, else 1)
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"

    @T.prim_func
    def bwd_states(
        k: T.Tensor((Ttot, H, D), dtype),
        v: T.Tensor((Ttot, HV, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        beta: T.Tensor((Ttot, HV), "float32"),
        rk: T.Tensor((NRT, H), "float32"),
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        h0: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        hsT: T.Tensor((NCG, HV, D, D), "float32"),
        vnew: T.Tensor((Ttot, HV, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        has_h0: T.int32,
        has_norm: T.int32,
    ):
        with T.Kernel(2 * num_seqs, HV, threads=128) as (bx, hv):
            n = bx // 2
            c0 = (bx % 2) * DV
            hk = hv // (HV // H)
            bos = T.if_then_else(seq_len > 0, n * seq_len, cu_seqlens[n])
            eos = T.if_then_else(seq_len > 0, n * seq_len + seq_len, cu_seqlens[n + 1])
            nct = T.ceildiv(eos - bos, C)
            chunk_base = T.if_then_else(seq_len > 0, n * nct, chunk_offsets[n])

            k_s = T.alloc_shared((C, D), dtype)
            v_s = T.alloc_shared((C, DV), dtype)
            au_s = T.alloc_shared((C, C), dtype)
            aw_s = T.alloc_shared((C, C), dtype)
            w_s = T.alloc_shared((C, D), dtype)
            s_s = T.alloc_shared((DV, D), dtype)
            vn_s = T.alloc_shared((DV, C), dtype)
            gc_s = T.alloc_shared((C,), acc)
            b_s = T.alloc_shared((C,), acc)
            rk_s = T.alloc_shared((C,), acc)
            st = T.alloc_fragment((DV, D), acc)
            w_f = T.alloc_fragment((C, D), acc)
            vt_f = T.alloc_fragment((DV, C), acc)

            for i, j in T.Parallel(DV, D):
                st[i, j] = T.if_then_else(has_h0 > 0, h0[T.min(n, NST - 1), hv, j, c0 + i], 0.0)

            for c in T.serial(nct):
                t0 = bos + c * C
                nvalid = T.min(C, eos - t0)
                chunk = chunk_base + c
                for i, j in T.Parallel(DV, D):
                    hsT[chunk, hv, c0 + i, j] = st[i, j]
                    s_s[i, j] = T.cast(st[i, j], dtype)
                load_rows(k_s, k, t0, nvalid, Ttot, hk, 0)
                load_rows(v_s, v, t0, nvalid, Ttot, hv, c0)
                for i in T.Parallel(C):
                    gc_s[i] = gvec[chunk, hv, GV_GC, i]
                    b_s[i] = T.if_then_else(i < nvalid, beta[T.min(t0 + i, Ttot - 1), hv], 0.0)
                    rk_s[i] = T.if_then_else(has_norm > 0, rk[T.min(t0 + i, NRT - 1), hk], 1.0)
                T.sync_threads()
                for i, j in T.Parallel(C, C):
                    au = gated_wy_entry(L, gc_s, b_s, t0, nvalid, Ttot, hv, i, j)
                    au_s[i, j] = T.cast(au, dtype)
                    aw_s[i, j] = T.cast(au * T.exp(gc_s[j]) * rk_s[j], dtype)
                T.sync_threads()
                T.gemm(aw_s, k_s, w_f, clear_accum=True)
                for i, j in T.Parallel(C, D):
                    w_s[i, j] = T.cast(-w_f[i, j], dtype)
                T.gemm(v_s, au_s, vt_f, transpose_A=True, transpose_B=True, clear_accum=True)
                T.sync_threads()
                T.gemm(s_s, w_s, vt_f, transpose_B=True)
                for i, j in T.Parallel(DV, C):
                    vn_s[i, j] = T.cast(vt_f[i, j], dtype)
                    if j < nvalid:
                        vnew[t0 + j, hv, c0 + i] = vt_f[i, j]
                T.sync_threads()
                # state update: K rows scaled in place to diag(exp(gc_last - gc) rk) K
                for i, j in T.Parallel(C, D):
                    k_s[i, j] = T.cast(T.cast(k_s[i, j], acc) * (T.exp(gc_s[C - 1] - gc_s[i]) * rk_s[i]), dtype)
                for i, j in T.Parallel(DV, D):
                    st[i, j] = st[i, j] * T.exp(gc_s[C - 1])
                T.sync_threads()
                T.gemm(vn_s, k_s, st)
                T.sync_threads()

    return bwd_states


def variants():
    return [(variant_symbol(NAME, dt, "float32"), dict(dtype=dt)) for dt in DTYPES]
