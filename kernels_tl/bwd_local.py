"""bwd_local: the backward's per-chunk gradients - dq, dk, dv, dg, dbeta of every token from
the chunk's inputs, the state at its start and the state gradient at its end (reference:
flashgdn.reference_bwd.chunk_local_grads, which spells out the same algebra).

Two kernels from one program (build(last=...)): `bwd_local`, one CTA per (full chunk, value
head), 1-D grid NC * HV with the value head fastest (a GVA group's CTAs share Q, K in L2), a
partial chunk exits at once; and `bwd_local_last`, one CTA per
(sequence, value head), grid (N, HV), for the sequence's last chunk when partial (row-masked
tiles, rows past the end read as 0; the fp32 diagonal terms below). Keeping that code out of the
hot kernel cut it from 10.8k to 7.1k instructions and 21% of its time (instruction fetch).
256 threads = two warpgroups sharing every GEMM (M = 64 rows, N split two ways: n64 / n32
tiles), synchronous wgmma, one CTA per SM: the load phase is exposed
(docs/perf-notes.md). Four warpgroups (v6c) were 5% faster while every row sum cost a pair of
CTA-wide barriers per output and butterfly level; with the sums batched (RB, CB below) two
warpgroups are 6% faster than four: a row sum crosses one warpgroup boundary instead of two,
and a barrier waits for 8 warps instead of 16 (then 215 registers, no spills). CTA barriers are what
this kernel waits on most (ncu), so the row terms of dgc are summed once, not per phase.
Element-wise passes compute into register fragments and store to shared memory in separate
store-only passes: a shared store between two elements' loads made every element a dependent
load-exp-store chain (nvcc cannot disambiguate views of the one dynamic shared buffer; v8a,
-12%). Now 179 registers, ~230 KB of shared memory.

Inputs (smem, input dtype unless noted): Q, K [64,128] (raw; rq, rk = L2-norm row factors or 1),
V, dO [64,128], L [64,64] (chunk_prep's gate-free WY inverse), dV_new [64,128] (bwd_dstates'
high plane, i.e. rounded to the input dtype; the last-chunk kernel adds the low plane for its
fp32 terms), S^T [128 V, 128 K] (input dtype, from the state pass; the last-chunk
kernel splits h0 into bf16 hi + lo when the chunk is its sequence's only one), dS'^T (input
dtype, from bwd_dstates), gc, beta, rq, rk (fp32 vectors).

  Kn = diag(rk) K, Qn = diag(rq) Q, E = exp(gc), G_ts = exp(gc_t - gc_s) (s <= t)
  Au = (G * L) diag(beta)
  dR   = Au^T dV_new                       (= dv; v_new = Au R)       wgmma m64n128k64, A^T
  X    = K S  (+ K S_lo in the last-chunk kernel)                   wgmma m64n128k128
  R    = V - diag(E rk) X,   dgc -= E rk rowsum(dR * X)
  VN   = Au R                                                          wgmma m64n128k64
  dAu  = dV_new R^T,  dP = scale dO VN^T (s <= t)                      wgmma m64n64k128 x 2
         (the diagonals dAu_tt, dP_tt in fp32 from unrounded operands: for a lone token each is one
         128-term dot product that cancellation would strip of digits with bf16 operands; dQKn's
         diagonal reaches dq, dk in fp32 too, outside the bf16 GEMM operands)
  dbeta_s = sum_t dAu_ts M_ts (M = G * L),  dL = (dAu diag(beta)) * G
  dQKn = G * dP,  dG = dAu diag(beta) * L + dP * QKn,  dgc += rowsum(dG * G) - colsum(dG * G)
  dA   = -StrictLower(L^T dL L^T)                                      wgmma m64n64k64 x 2
  dbeta_t += sum_s dA_ts KKn_ts,  Bm = diag(beta) dA
  dQn  = scale diag(E) dO S^T + (dQKn diag(rk)) K                      wgmma m64n128k128, m64n128k64
  dgc += scale E rq rowsum(Q * dO S^T)
  dKd  = VN dS'^T,  dgc -= t_kd = exp(gl - gc) rk rowsum(dKd * K)      wgmma m64n128k128
  dKn  = diag(exp(gl - gc)) dKd + (diag(rq) dQKn)^T Q - (diag(E) dR) S^T + ((Bm + Bm^T) diag(rk)) K
  dgc[63] += sum_t t_kd + exp(gl) <S_hi, dS'>;  dg = reverse cumsum of dgc over the chunk
  (dgc's row terms w, q, -t_kd are summed once at the end, element by element until then;
  dgl = sum t_kd + exp(gl) <S, dS'> is needed only in total: per-thread partials, placed after
  dgc in one 2C-long reverse cumsum)
Full chunks load Q, K, V, dO, L, S^T, dS'^T and dV_new's high plane with cp.async; the
last-chunk kernel loads dS'^T into S lo's buffer once that is dead. Full chunks write dv, dq and
dk through swizzled shared tiles, copied out in 16-byte rows (4-float atomics with GVA) after a
barrier: from the GEMM fragments each thread would issue 32 scattered 2- or 8-byte accesses with
64-bit addresses a tile (-3% for dv, -2% for dq and dk; docs/perf-notes.md, v7e, v7f).

dq, dk are fp32: per value head, or with gva_sum (GVA) added with float atomics into the rows of
the group's q/k head (zeroed by the caller; summation order varies between runs) - the caller
differentiates the L2 norm; dv in the input dtype (it is final: one rounding, and half the bytes); dg, dbeta in fp32.
"""

import functools

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, GV_ROWS, GV_GC, locate_item, pdl_wait, variant_symbol


@T.macro
def store_rows(frag, dst, t0, nvalid, head):
    """dst[t0 + i, head, :] = frag[i, :] (cast to dst's dtype) for the chunk's valid rows: one
    whole-tile copy for a full chunk, a row-masked loop for a sequence's last one."""
    if nvalid == frag.shape[0]:
        T.copy(frag, dst[t0:t0 + frag.shape[0], head, 0:frag.shape[1]])
    else:
        for i, j in T.Parallel(frag.shape[0], frag.shape[1]):
            if i < nvalid:
                dst[t0 + i, head, j] = T.cast(frag[i, j], dst.dtype)


@T.macro
def add_rows(frag, dst, t0, nvalid, head):
    """dst[t0 + i, head, :] += frag[i, :] with float atomics (a GVA group's value heads add into
    one q/k head's rows), for the chunk's valid rows."""
    if nvalid == frag.shape[0]:
        T.atomic_add(dst[t0:t0 + frag.shape[0], head, 0:frag.shape[1]], frag)
    else:
        for i, j in T.Parallel(frag.shape[0], frag.shape[1]):
            if i < nvalid:
                T.atomic_add(dst[t0 + i, head, j], frag[i, j])

NAME = "bwd_local"
# plain vectorised tile loads, not TMA: TMA destinations are kept out of the shared-memory merge
# (285 KB instead of 199 KB)
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False, tilelang.PassConfigKey.TL_DISABLE_TMA_LOWER: True}
DTYPES = ("bfloat16", "float16")
THREADS = 256
# Outputs per thread of the row sums (64 x 128 and 64 x 64 tiles: 2 rows) and of the column sums
# (64 x 64 tiles: 64 / warpgroups / 4 columns), each reduced in one batched AllReduce: one pair of
# CTA barriers per butterfly level for all of a thread's outputs instead of a pair (and a
# __syncthreads) per output - rows are split over the warpgroups, so every level above the warp is
# a CTA-wide barrier (docs/perf-notes.md, v7a: -6%).
RB = 2
CB = CHUNK // (THREADS // 128) // 4


def build(dtype: str, last: bool):
    """last=False: the full chunks (grid: every chunk; a sequence's partial last chunk is skipped).
    last=True: one CTA per sequence for its last chunk when that is partial (masked loads and
    stores, the fp32 diagonal terms, <S, dS'> exact). Two kernels so that the hot one carries
    none of the partial-chunk code: this kernel is sensitive to code it never executes
    (instruction fetch), e.g. 2.41 vs 2.19 ms for one extra never-taken block."""
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NCG = T.dynamic("NCG")     # chunk rows of gvec / hsT / dhsT (and the grid)
    NRT = T.dynamic("NRT")     # rows of rq / rk (Ttot with the L2 norm, else 1)
    NDH = T.dynamic("NDH")     # heads of dq / dk: HV (per value head) or H (GVA sums, gva_sum)
    NST = T.dynamic("NST")     # rows of dht (sequences, or 1 without it)
    NH0 = T.dynamic("NH0")     # rows of h0 (sequences, or 1 without it)
    C = CHUNK
    D = HEAD_DIM
    acc = "float32"

    @T.prim_func
    def bwd_local(
        q: T.Tensor((Ttot, H, D), dtype),
        k: T.Tensor((Ttot, H, D), dtype),
        v: T.Tensor((Ttot, HV, D), dtype),
        dout: T.Tensor((Ttot, HV, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        beta: T.Tensor((Ttot, HV), "float32"),
        rq: T.Tensor((NRT, H), "float32"),
        rk: T.Tensor((NRT, H), "float32"),
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        hsT: T.Tensor((NCG, HV, D, D), dtype),          # S^T at each chunk's start (state pass)
        dhsT: T.Tensor((NCG, HV, D, D), dtype),
        dvnew: T.Tensor((Ttot, HV, 2 * D), dtype),     # per V half: high plane, low plane (bwd_dstates)
        dht: T.Tensor((NST, HV, D, D), "float32"),     # d(final state) [n, hv, k, v], if has_dht
        h0: T.Tensor((NH0, HV, D, D), "float32"),      # initial state [n, hv, k, v], if has_h0
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        dq: T.Tensor((Ttot, NDH, D), "float32"),
        dk: T.Tensor((Ttot, NDH, D), "float32"),
        dv: T.Tensor((Ttot, HV, D), dtype),
        dg: T.Tensor((Ttot, HV), "float32"),
        dbeta: T.Tensor((Ttot, HV), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        has_norm: T.int32,
        has_dht: T.int32,
        has_h0: T.int32,
        gva_sum: T.int32,
        scale: T.float32,
    ):
        # The full-chunk kernel's grid is 1-D, value head fastest: the value heads of a GVA group
        # (and the rest of the chunk's heads) run side by side, so the group's Q and K tiles come
        # from L2 after the first CTA reads them (chunk-major, a group's heads ran a wave or more
        # apart).
        with T.Kernel(*((NS1 - 1, HV) if last else (NCG * HV,)), threads=THREADS) as ids:
            pdl_wait()
            idl = T.alloc_local((2,), "int32")   # (item, value head), computed once (see hk below)
            if last:
                idl[0] = ids[0]
                idl[1] = ids[1]
            else:
                idl[0] = ids // HV
                idl[1] = ids % HV
            item = idl[0]
            hv = idl[1]
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            s_from_h0 = False
            if last:
                # sequence `item`'s last chunk: loc = (sequence or -1, chunk, first token, rows)
                bos = T.if_then_else(seq_len > 0, item * seq_len, cu_seqlens[item])
                eos = T.if_then_else(seq_len > 0, item * seq_len + seq_len, cu_seqlens[item + 1])
                nct = T.ceildiv(eos - bos, C)
                loc[1] = T.if_then_else(seq_len > 0, item * nct, chunk_offsets[item]) + nct - 1
                loc[2] = bos + (nct - 1) * C
                loc[3] = eos - loc[2]
                loc[0] = T.if_then_else(T.And(nct > 0, loc[3] < C), item, -1)
                # a sequence of one (partial) chunk starts from h0 itself: S exact in fp32 (the
                # state pass stores it rounded to the input dtype)
                loc[4] = T.if_then_else(T.And(nct == 1, has_h0 > 0), 1, 0)
                s_from_h0 = loc[4] > 0
                seq_id = loc[0]
                chunk = loc[1]
                t0 = loc[2]
                nvalid = loc[3]
            else:
                chunk = item
                locate_item(chunk, 1, 0, seq_len, num_seqs, cu_seqlens, chunk_offsets, loc, 21)
                t0 = loc[1] + loc[3] * C
                loc[0] = T.if_then_else(loc[2] - t0 >= C, loc[0], -1)   # full chunks only
                seq_id = loc[0]
                nvalid = C
            # the q/k head, computed once into a register: as an inline expression TileLang
            # re-derives it (64-bit floor division) inside every q/k/dq/dk address
            hkl = T.alloc_local((1,), "int32")
            hkl[0] = hv // (HV // H)
            hk = hkl[0]

            q_s = T.alloc_shared((C, D), dtype)
            k_s = T.alloc_shared((C, D), dtype)
            v_s = T.alloc_shared((C, D), dtype)
            do_s = T.alloc_shared((C, D), dtype)
            dvn_s = T.alloc_shared((C, D), dtype)
            sh_s = T.alloc_shared((D, D), dtype)       # S^T [v, k], high part
            sl_s = T.alloc_shared((D, D), dtype)       # S^T low part, then dS'^T
            r_s = T.alloc_shared((C, D), dtype)
            vn_s = T.alloc_shared((C, D), dtype)
            dre_s = T.alloc_shared((C, D), dtype)      # -diag(E) dR
            if not last:
                dvo_s = T.alloc_shared((C, D), dtype)  # dv = dR on its way out
                gq_s = T.alloc_shared((C, D), acc)     # dq on its way out
                gk_s = T.alloc_shared((C, D), acc)     # dk on its way out
                # swizzled: row-major, a warp's fragment stores would hit 4 of the 32 banks
                T.annotate_layout({dvo_s: tilelang.layout.make_swizzled_layout(dvo_s),
                                   gq_s: tilelang.layout.make_swizzled_layout(gq_s),
                                   gk_s: tilelang.layout.make_swizzled_layout(gk_s)})
            l_s = T.alloc_shared((C, C), dtype)
            au_s = T.alloc_shared((C, C), dtype)
            dl_s = T.alloc_shared((C, C), dtype)
            t1_s = T.alloc_shared((C, C), dtype)
            qka_s = T.alloc_shared((C, C), dtype)      # dQKn diag(rk)
            qkb_s = T.alloc_shared((C, C), dtype)      # diag(rq) dQKn
            bs_s = T.alloc_shared((C, C), dtype)       # Bm diag(rk), Bm = diag(beta) dA
            bt_s = T.alloc_shared((C, C), dtype)       # diag(rk) Bm (read transposed)
            gc_s = T.alloc_shared((C,), acc)
            b_s = T.alloc_shared((C,), acc)
            rq_s = T.alloc_shared((C,), acc)
            rk_s = T.alloc_shared((C,), acc)
            # [0, C): dgc's row terms; [C, 2C): row partials of dgl = sum t_kd + exp(gl) <S, dS'>. One
            # reverse cumsum over both gives dg_t = sum_{s >= t} dgc_s + dgl: dgl's own sum (a
            # reduction with its CTA barriers) and the add into dgc[C - 1] are not needed.
            dgc_s = T.alloc_shared((2 * C,), acc)
            db_s = T.alloc_shared((C,), acc)           # row terms of dbeta
            dgc2_s = T.alloc_shared((C,), acc)         # column terms of dgc
            if not last:
                dsum_s = T.alloc_shared((THREADS,), acc)   # per-thread partials of dgl
                dpart = T.alloc_local((1,), acc)
                sv_a = T.alloc_local((8,), dtype)
                sv_b = T.alloc_local((8,), dtype)
            db2_s = T.alloc_shared((C,), acc)          # column terms of dbeta
            dd_s = T.alloc_shared((C,), acc)           # dAu's diagonal, fp32
            dpd_s = T.alloc_shared((C,), acc)          # dP's diagonal, fp32
            dqd_s = T.alloc_shared((C,), acc)          # dQKn's diagonal, fp32
            rlo_s = T.alloc_shared((C,), acc)          # <dO_t, R_t - bf16(R_t)>

            kk_f = T.alloc_fragment((C, C), acc)
            qk_f = T.alloc_fragment((C, C), acc)
            dau_f = T.alloc_fragment((C, C), acc)
            dp_f = T.alloc_fragment((C, C), acc)
            t1_f = T.alloc_fragment((C, C), acc)
            da_f = T.alloc_fragment((C, C), acc)
            red64_f = T.alloc_fragment((C, C), acc)
            mb_f = T.alloc_fragment((C, C), acc)       # dAu * M (column sums -> dbeta)
            gg_f = T.alloc_fragment((C, C), acc)       # dG * G (row and column sums -> dgc)
            dr_f = T.alloc_fragment((C, D), acc)
            x_f = T.alloc_fragment((C, D), acc)
            vn_f = T.alloc_fragment((C, D), acc)
            y_f = T.alloc_fragment((C, D), acc)
            kd_f = T.alloc_fragment((C, D), acc)
            red_f = T.alloc_fragment((C, D), acc)
            # dgc's row terms (w, q and -t_kd), element by element until one row sum at the end:
            # every separate row sum costs CTA barriers (two around it, two inside)
            dgcw_f = T.alloc_fragment((C, D), acc)
            row_f = T.alloc_fragment((C,), acc)
            row2_f = T.alloc_fragment((C,), acc)
            col_f = T.alloc_fragment((C,), acc)
            col2_f = T.alloc_fragment((C,), acc)

            if seq_id >= 0:
                # ---- loads (rows past the sequence end are 0) ----
                # Full chunks (all but a sequence's last) take plain vectorised tile copies: this
                # kernel is bound by instruction issue (and instruction-cache misses: it is ~10k
                # straight-line instructions), and the masked, clamped loads below cost several
                # times the instructions.
                if not last:
                    # cp.async, one group per copy, in the order of first use: the first GEMMs
                    # wait for Q, K, L only (ptx_wait_group(6) below) and run while S, dV_new, V,
                    # dO and dS' are still arriving; each later phase waits for its own tiles
                    T.async_copy(q[t0:t0 + C, hk, 0:D], q_s)
                    T.async_copy(k[t0:t0 + C, hk, 0:D], k_s)
                    T.async_copy(L[t0:t0 + C, hv, 0:C], l_s)      # exactly lower triangular (chunk_prep)
                    T.async_copy(hsT[chunk, hv, 0:D, 0:D], sh_s)
                    T.async_copy(dvnew[t0:t0 + C, hv, 0:D // 2], dvn_s[:, 0:D // 2])
                    T.async_copy(dvnew[t0:t0 + C, hv, D:D + D // 2], dvn_s[:, D // 2:D])
                    T.async_copy(v[t0:t0 + C, hv, 0:D], v_s)
                    T.async_copy(dout[t0:t0 + C, hv, 0:D], do_s)
                    T.async_copy(dhsT[chunk, hv, 0:D, 0:D], sl_s)
                else:
                    for i, j in T.Parallel(C, D):
                        q_s[i, j] = T.if_then_else(i < nvalid, q[T.min(t0 + i, Ttot - 1), hk, j], T.cast(0, dtype))
                        k_s[i, j] = T.if_then_else(i < nvalid, k[T.min(t0 + i, Ttot - 1), hk, j], T.cast(0, dtype))
                    for i, j in T.Parallel(C, D):
                        v_s[i, j] = T.if_then_else(i < nvalid, v[T.min(t0 + i, Ttot - 1), hv, j], T.cast(0, dtype))
                        do_s[i, j] = T.if_then_else(i < nvalid, dout[T.min(t0 + i, Ttot - 1), hv, j], T.cast(0, dtype))
                    for i, j in T.Parallel(C, D):
                        dvn_s[i, j] = T.if_then_else(i < nvalid, dvnew[T.min(t0 + i, Ttot - 1), hv, (j // 64) * 128 + j % 64],
                                                     T.cast(0, dtype))
                    for i, j in T.Parallel(C, C):
                        l_s[i, j] = T.if_then_else(T.And(i < nvalid, j <= i), L[T.min(t0 + i, Ttot - 1), hv, j],
                                                   T.cast(0, dtype))
                    # S^T as bf16 high + low parts: from h0 (fp32) for a sequence's only chunk,
                    # else the state pass's rounded S (low part 0)
                    for i, j in T.Parallel(D, D):
                        s_ij = T.if_then_else(s_from_h0, h0[T.min(seq_id, NH0 - 1), hv, j, i], T.cast(hsT[chunk, hv, i, j], acc))
                        s_hi = T.cast(s_ij, dtype)
                        sh_s[i, j] = s_hi
                        sl_s[i, j] = T.cast(s_ij - T.cast(s_hi, acc), dtype)
                for i in T.Parallel(C):
                    gc_s[i] = gvec[chunk, hv, GV_GC, i]
                    b_s[i] = T.if_then_else(i < nvalid, beta[T.min(t0 + i, Ttot - 1), hv], 0.0)
                    rq_s[i] = T.if_then_else(has_norm > 0, rq[T.min(t0 + i, NRT - 1), hk], 1.0)
                    rk_s[i] = T.if_then_else(has_norm > 0, rk[T.min(t0 + i, NRT - 1), hk], 1.0)
                T.ptx_wait_group(0 if last else 6)     # Q, K, L
                T.sync_threads()

                # ---- K K^T, Q K^T; Au ----
                T.gemm(k_s, k_s, kk_f, transpose_B=True, clear_accum=True)
                T.gemm(q_s, k_s, qk_f, transpose_B=True, clear_accum=True)
                # Every element-wise pass below computes into registers first and stores to shared
                # memory in a separate store-only pass: with a shared-memory store between them,
                # nvcc cannot move the next element's shared loads above it (all tiles are views of
                # one buffer) and each element became a dependent load-exp-store chain (the Au pass
                # took 1.8k cycles for 16 elements a thread; perf-notes v8)
                for i, j in T.Parallel(C, C):
                    t1_f[i, j] = T.cast(l_s[i, j], acc) * T.exp(T.if_then_else(j <= i, gc_s[i] - gc_s[j], 0.0)) * b_s[j]
                T.copy(t1_f, au_s)
                if not last:
                    T.ptx_wait_group(2)                 # S, dV_new, V
                T.sync_threads()

                # ---- dR = Au^T dV_new (= dv); X = K S; R; dgc (w term) ----
                T.gemm(au_s, dvn_s, dr_f, transpose_A=True, clear_accum=True)
                T.gemm(k_s, sh_s, x_f, transpose_B=True, clear_accum=True)
                if last:
                    T.gemm(k_s, sl_s, x_f, transpose_B=True)
                if last:
                    store_rows(dr_f, dv, t0, nvalid, hv)
                # x_f becomes R (fp32); dR leaves as dv, then as -diag(E) dR
                for i, j in T.Parallel(C, D):
                    dgcw_f[i, j] = -T.exp(gc_s[i]) * rk_s[i] * dr_f[i, j] * x_f[i, j]
                    x_f[i, j] = T.cast(v_s[i, j], acc) - T.exp(gc_s[i]) * rk_s[i] * x_f[i, j]
                T.copy(x_f, r_s)
                if not last:
                    T.copy(dr_f, dvo_s)
                for i, j in T.Parallel(C, D):
                    dr_f[i, j] = -T.exp(gc_s[i]) * dr_f[i, j]
                T.copy(dr_f, dre_s)
                # A sequence's last (partial) chunk only: the diagonal terms in fp32 (dd_s, rlo_s,
                # dpd_s, dqd_s below). A lone token's dbeta is all dAu_tt = <dV_new_t, R_t>, its dq,
                # dk scale with dP_tt: single 128-term dots that bf16-rounded operands can strip of
                # most digits by cancellation. In a full chunk the off-diagonal terms dominate and
                # the GEMM's diagonal serves (these passes on every chunk cost 21% of the kernel).
                if last:
                    # dAu's diagonal <dV_new_t, R_t> from the fp32 operands
                    for i, j in T.Parallel(C, D):
                        ti = T.min(t0 + i, Ttot - 1)
                        dvn32 = T.cast(dvnew[ti, hv, (j // 64) * 128 + j % 64], acc) \
                            + T.cast(dvnew[ti, hv, (j // 64) * 128 + 64 + j % 64], acc)
                        red_f[i, j] = x_f[i, j] * T.if_then_else(i < nvalid, dvn32, 0.0)
                    T.reduce_sum(red_f, row2_f, dim=1, batch=RB)
                    for i in T.Parallel(C):
                        dd_s[i] = row2_f[i]
                    # <dO_t, R_t - bf16(R_t)>: what rounding R for the VN GEMM takes from dP's diagonal
                    for i, j in T.Parallel(C, D):
                        r32 = x_f[i, j]
                        red_f[i, j] = T.cast(do_s[i, j], acc) * (r32 - T.cast(T.cast(r32, dtype), acc))
                    T.reduce_sum(red_f, row_f, dim=1, batch=RB)
                    for i in T.Parallel(C):
                        rlo_s[i] = row_f[i]
                T.sync_threads()

                # ---- VN = Au R; dAu = dV_new R^T; dP = dO VN^T ----
                T.gemm(au_s, r_s, vn_f, clear_accum=True)
                T.gemm(dvn_s, r_s, dau_f, transpose_B=True, clear_accum=True)
                if not last:
                    # dv leaves from shared memory in 16-byte rows (staged in the pass above, behind
                    # the barrier that pass needs anyway) instead of 32 scattered 4-byte stores a
                    # thread with their 64-bit addresses
                    T.copy(dvo_s, dv[t0:t0 + C, hv, 0:D])
                T.copy(vn_f, vn_s)
                if last:
                    # dP's diagonal <dO_t, VN_t> in fp32 (VN unrounded, and its own term Au_tt R_t
                    # with R's rounding put back), for the same reason as dbeta's
                    for i, j in T.Parallel(C, D):
                        red_f[i, j] = T.cast(do_s[i, j], acc) * vn_f[i, j]
                    T.reduce_sum(red_f, row2_f, dim=1, batch=RB)
                    for i in T.Parallel(C):
                        dpd_s[i] = row2_f[i] + T.cast(au_s[i, i], acc) * rlo_s[i]
                if not last:
                    T.ptx_wait_group(1)                 # dO
                T.sync_threads()
                T.gemm(do_s, vn_s, dp_f, transpose_B=True, clear_accum=True)

                # ---- the 64 x 64 element-wise stage ----
                # registers only (dL, dQKn diag(rk), diag(rq) dQKn overwrite dAu, dP, QK^T in place,
                # after their last read), then the stores
                for i, j in T.Parallel(C, C):
                    gij = T.if_then_else(T.And(j <= i, i < nvalid), T.exp(T.if_then_else(j <= i, gc_s[i] - gc_s[j], 0.0)),
                                         0.0)
                    lij = T.cast(l_s[i, j], acc)
                    dauv = T.if_then_else(i == j, dd_s[i], dau_f[i, j]) if last else dau_f[i, j]
                    dm = dauv * b_s[j]
                    dpm = T.if_then_else(j <= i, scale * (T.if_then_else(i == j, dpd_s[i], dp_f[i, j]) if last
                                                          else dp_f[i, j]), 0.0)
                    dqk = gij * dpm
                    dgm = dm * lij + dpm * qk_f[i, j] * rq_s[i] * rk_s[j]
                    mb_f[i, j] = dauv * gij * lij
                    gg_f[i, j] = dgm * gij
                    # in a partial chunk the diagonal goes to dq, dk in fp32 below (dqd_s): for a lone
                    # token it is the whole term, and a bf16-rounded scalar per value head can
                    # cancel in a GVA sum
                    if last:
                        if i == j:
                            dqd_s[i] = dqk
                        dp_f[i, j] = T.if_then_else(i == j, 0.0, dqk * rk_s[j])
                        qk_f[i, j] = T.if_then_else(i == j, 0.0, dqk * rq_s[i])
                    else:
                        dp_f[i, j] = dqk * rk_s[j]
                        qk_f[i, j] = dqk * rq_s[i]
                    dau_f[i, j] = dm * gij
                T.copy(dau_f, dl_s)
                T.copy(dp_f, qka_s)
                T.copy(qk_f, qkb_s)
                T.reduce_sum(gg_f, row_f, dim=1, batch=RB)
                T.reduce_sum(gg_f, col_f, dim=0, batch=CB)
                T.reduce_sum(mb_f, col2_f, dim=0, batch=CB)
                for i in T.Parallel(C):
                    dgc_s[i] = row_f[i]
                for i in T.Parallel(C):
                    dgc2_s[i] = -col_f[i]
                    db2_s[i] = col2_f[i]
                T.sync_threads()

                # ---- dA = -StrictLower(L^T dL L^T); dbeta (A term); Bm ----
                T.gemm(dl_s, l_s, t1_f, transpose_B=True, clear_accum=True)
                T.copy(t1_f, t1_s)
                T.sync_threads()
                T.gemm(l_s, t1_s, da_f, transpose_A=True, clear_accum=True)
                # dK's (Bm + Bm^T) diag(rk) K as two GEMMs on bf16 tiles Bm diag(rk) and diag(rk) Bm
                # (the second read transposed), formed in registers: no fp32 round trip of Bm
                # through shared memory for the transposed sum (1.2k cycles a chunk)
                for i, j in T.Parallel(C, C):
                    dam = T.if_then_else(j < i, -da_f[i, j], 0.0)
                    red64_f[i, j] = dam * kk_f[i, j] * rk_s[i] * rk_s[j]
                    t1_f[i, j] = b_s[i] * dam * rk_s[j]
                    da_f[i, j] = rk_s[i] * b_s[i] * dam
                T.copy(t1_f, bs_s)
                T.copy(da_f, bt_s)
                T.reduce_sum(red64_f, row2_f, dim=1, batch=RB)
                for i in T.Parallel(C):
                    db_s[i] = row2_f[i]
                T.sync_threads()

                # ---- dq = scale diag(E) dO S^T + (dQKn diag(rk)) K ----
                T.gemm(do_s, sh_s, y_f, clear_accum=True)
                if last:
                    T.gemm(do_s, sl_s, y_f)
                for i, j in T.Parallel(C, D):
                    dgcw_f[i, j] = dgcw_f[i, j] + scale * T.exp(gc_s[i]) * rq_s[i] * T.cast(q_s[i, j], acc) * y_f[i, j]
                if last:
                    for i, j in T.Parallel(C, D):
                        y_f[i, j] = scale * T.exp(gc_s[i]) * y_f[i, j] + dqd_s[i] * rk_s[i] * T.cast(k_s[i, j], acc)
                else:
                    for i, j in T.Parallel(C, D):
                        y_f[i, j] = scale * T.exp(gc_s[i]) * y_f[i, j]
                T.sync_threads()
                if last:
                    # S's low part is dead: dS'^T (stored in the input dtype) streams into its
                    # buffer (cp.async) under the last dq GEMM and the dq stores
                    T.async_copy(dhsT[chunk, hv, 0:D, 0:D], sl_s)
                T.gemm(qka_s, k_s, y_f)
                if last:
                    if gva_sum > 0:
                        add_rows(y_f, dq, t0, nvalid, hk)
                    else:
                        store_rows(y_f, dq, t0, nvalid, hv)
                else:
                    T.copy(y_f, gq_s)
                T.ptx_wait_group(0)                     # dS' (the last-chunk kernel: its copy above)
                T.sync_threads()
                if not last:
                    # dq leaves from shared memory in 16-byte rows (4-float atomics with GVA)
                    if gva_sum > 0:
                        T.atomic_add(dq[t0:t0 + C, hk, 0:D], gq_s)
                    else:
                        T.copy(gq_s, dq[t0:t0 + C, hv, 0:D])

                # ---- <S, dS'> row-pair partials (dg's exp(gl) <S, dS'> term)
                if last:
                    # a sequence's last chunk: dS' there is d(final state) itself, given in fp32,
                    # and S is h0 (fp32) when the chunk is the sequence's only one: exact. For a
                    # lone token dg is exp(g) <S, dS'> against terms that can cancel it; the
                    # roundings of the full chunks' path once moved a T = 1 dg by 2.4e-2
                    for i, j in T.Parallel(C, D):
                        n_t = T.min(seq_id, NST - 1)
                        n_0 = T.min(seq_id, NH0 - 1)
                        s_a = T.if_then_else(s_from_h0, h0[n_0, hv, j, i], T.cast(hsT[chunk, hv, i, j], acc))
                        s_b = T.if_then_else(s_from_h0, h0[n_0, hv, j, C + i], T.cast(hsT[chunk, hv, C + i, j], acc))
                        red_f[i, j] = T.exp(gc_s[C - 1]) * T.if_then_else(
                            has_dht > 0, s_a * dht[n_t, hv, j, i] + s_b * dht[n_t, hv, j, C + i], 0.0)
                else:
                    # S's high part only: the low part moves the sum by <= 2^-9 relative, as
                    # dS''s own rounding does. dgl is needed only in total (the reverse cumsum adds
                    # it to every dg of the chunk), so each thread keeps a private partial (its
                    # half row of S^T and dS'^T in 16-byte pieces: any split of the 128 x 128 sum
                    # will do, and t_kd below joins it) and the partials meet in the final cumsum:
                    # one row sum fewer (thread t: row t % 128, half t // 128 - a quarter-warp's
                    # 16-byte reads then fall on 8 rows, which the tiles' swizzle spreads over all banks)
                    dpart[0] = 0.0
                    for it in T.serial(D // 2 // 8):
                        for e in T.vectorized(8):
                            sv_a[e] = sh_s[tx % D, (tx // D) * (D // 2) + it * 8 + e]
                        for e in T.vectorized(8):
                            sv_b[e] = sl_s[tx % D, (tx // D) * (D // 2) + it * 8 + e]
                        for e in T.serial(8):
                            dpart[0] = dpart[0] + T.cast(sv_a[e], acc) * T.cast(sv_b[e], acc)
                    dpart[0] = T.exp(gc_s[C - 1]) * dpart[0]

                # ---- dk; t_kd (into dgc with -, into dgl with +); the row sums of dgc (and dgl) ----
                T.gemm(vn_s, sl_s, kd_f, clear_accum=True)
                for i, j in T.Parallel(C, D):
                    tkd = T.exp(gc_s[C - 1] - gc_s[i]) * rk_s[i] * kd_f[i, j] * T.cast(k_s[i, j], acc)
                    dgcw_f[i, j] = dgcw_f[i, j] - tkd
                    if last:
                        red_f[i, j] = red_f[i, j] + tkd
                    else:
                        dpart[0] = dpart[0] + tkd
                T.reduce_sum(dgcw_f, row_f, dim=1, batch=RB)
                if last:
                    T.reduce_sum(red_f, row2_f, dim=1, batch=RB)
                    for i in T.Parallel(C):
                        dgc_s[i] = dgc_s[i] + row_f[i]
                        dgc_s[C + i] = row2_f[i]
                else:
                    for i in T.Parallel(C):
                        dgc_s[i] = dgc_s[i] + row_f[i]
                    dsum_s[tx] = dpart[0]
                if last:
                    for i, j in T.Parallel(C, D):
                        kd_f[i, j] = T.exp(gc_s[C - 1] - gc_s[i]) * kd_f[i, j] \
                            + dqd_s[i] * rq_s[i] * T.cast(q_s[i, j], acc)
                else:
                    for i, j in T.Parallel(C, D):
                        kd_f[i, j] = T.exp(gc_s[C - 1] - gc_s[i]) * kd_f[i, j]
                T.gemm(qkb_s, q_s, kd_f, transpose_A=True)
                T.gemm(dre_s, sh_s, kd_f)
                T.gemm(bs_s, k_s, kd_f)
                T.gemm(bt_s, k_s, kd_f, transpose_A=True)
                if last:
                    if gva_sum > 0:
                        add_rows(kd_f, dk, t0, nvalid, hk)
                    else:
                        store_rows(kd_f, dk, t0, nvalid, hv)
                else:
                    T.copy(kd_f, gk_s)
                    T.sync_threads()
                    if gva_sum > 0:
                        T.atomic_add(dk[t0:t0 + C, hk, 0:D], gk_s)
                    else:
                        T.copy(gk_s, dk[t0:t0 + C, hv, 0:D])
                T.sync_threads()

                # ---- dgc, dg, dbeta ----
                if tx < C:
                    dgc_s[tx] = dgc_s[tx] + dgc2_s[tx]
                    db_s[tx] = db_s[tx] + db2_s[tx]
                    if not last:
                        dgc_s[C + tx] = functools.reduce(lambda a, b: a + b,
                                                         [dsum_s[p * C + tx] for p in range(THREADS // C)])
                T.sync_threads()
                T.cumsum(dgc_s, dim=0, reverse=True)
                T.sync_threads()
                if tx < C:
                    if tx < nvalid:
                        dg[t0 + tx, hv] = dgc_s[tx]
                        dbeta[t0 + tx, hv] = db_s[tx]

    return bwd_local


def variants():
    return [(variant_symbol(NAME, dt, "float32"), dict(dtype=dt, last=False)) for dt in DTYPES] + \
        [(variant_symbol(NAME + "_last", dt, "float32"), dict(dtype=dt, last=True)) for dt in DTYPES]
