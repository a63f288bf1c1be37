"""bwd_dstates: the backward's reverse pass over chunks - the gradient of the state at the end
of every chunk, dv_new of every token and dh0 (reference: flashgdn.reference_bwd.chunk_dstates).

The mirror of the forward's recurrence (fused_fwd), with the same structure: one CTA per
(segment, V half, value head), grid (2 * segments, HV), 256 threads = 2 warpgroups.

  inputs by TMA, issued by WG1, two rings: A = q, k [64,128] (NA deep; read by both warpgroups),
  B = dO [64,64] (this CTA's half of V), chunk_prep's gated WY tile Aw [64,64] (the forward's:
  read through `wy`, the input-dtype view of the gate-vector table) and the chunk's gate table
  (chunk_prep's rows GV_EG, GV_KF, GV_RQS, GV_RK, GV_RA, GV_GC, GV_MISC: every per-token factor,
  0 past the sequence end, so rows of a tile that belong to the next sequence drop out) (NB deep).

  WG1 prep, one chunk ahead of WG0 (nothing here depends on the state gradient):
      -w~ = Aw K  (Aw = (G * L) diag(cw): -w itself, or for bf16 rank-1 chunks -w / a_t, the
                   row factor left out as in the forward)          wgmma SS m64n128k64 -> smem [t][k]
          (until this session prep formed Aw from L in registers: ~110 instructions a chunk on
          the critical path; ncu had the state warpgroup waiting for prep 27% of its time)
      P^T = (K Q^T)[s <= t] * exp(gc_t - gc_s) rk_s rq_t scale       wgmma SS m64n64k128
      dvl = P^T dO                                                    wgmma RS m64n64k64  -> smem fp32 [s][v]
          (a sequence's last partial chunk: + (P_tt - bf16(P_tt)) dO_t, P's diagonal in fp32)
      dO~ = diag(exp(gc) rq scale) dO                                 smem [t][v]
      (P^T's gate ratio is a_t / a_s from chunk_prep's a_t = exp(gc_t - r) while the chunk decays by less than 80,
      else one exp per element)

  WG0 state (holds dS^T [64 V cols x 128 K] fp32 in registers), per chunk, last to first:
      dv_new^T = dS_hi^T K^T diag(kf) + dvl^T                          wgmma RS m64n64k128
          (the factor kf = exp(gc_last - gc) rk applied after the GEMM; at a sequence's last
          chunk, where dS^T = d(final state) as given, + dS_lo^T K^T: a lone token's dbeta is one
          dot product of dv_new with v - w S, and a bf16-rounded operand would cost it most of
          its digits)
      dS^T = exp(gc_last) dS^T + dO~^T Q + (dv_new diag(a))^T (-w~)   wgmma SS m64n128k64 (A^T), RS m64n128k64
          (a = 1 for fp16 and for chunks past the rank-1 limit)
      dv_new -> dvnew[token, hv, 128 V half + (0: bf16(dv_new) | 64: dv_new - bf16(dv_new))] in the
          input dtype (own chunks): a full chunk writes the high plane only (all that the per-chunk
          gradients of a full chunk read), staged [t][v] in an 8 KB tile and stored by TMA under
          the update GEMM; a sequence's last, partial chunk writes both planes with masked stores
          (bwd_local_last rebuilds fp32 from them: a lone token's dbeta is one dot product of it)
      dS_hi^T (the GEMM operand above, input dtype) -> the chunk's q stage, dead by now -> dhsT by
          TMA (own chunks); the stage is released at the next chunk's start, once read. Stored
          from registers, the 32 scattered stores a thread sat on the recurrence: 21% of this
          kernel (docs/perf-notes.md)
  After chunk 0 (the segment that owns it): dS^T -> dh0 (fp32).

The critical path per chunk is WG0's dv_new GEMMs followed by the update GEMM; the dO~^T Q
term is issued alongside the dv_new GEMMs. Barriers: fullA/emptyA (q, k ring), fullB/emptyB
(dO, L, gate table ring), pfull/pempty (prep outputs, double-buffered).

Intra-card CP as in the forward, mirrored: a segment [c_out, c_end) that does not end its
sequence starts w chunks *after* its end from dS = 0, where w is the fewest chunks over which
sum(g) <= ln(tol) with beta |k|^2 <= 2 throughout (chunk_prep's stats): the dropped gradient
then reaches c_end shrunk by tol (dS_c = T_c^T dS_c+1 + ..., |T_c^T| = |T_c| <= exp(sum g));
without such a w it starts at its own end from the true gradient there (exact_cp: bwd_cp_summary
+ cp_combine, the transition-product correction), or else at the sequence's last chunk from
d(final state) (exact, slower).

Variant bwd_cp_summary (summary=True), pass 1 of that correction: the reverse recurrence is
affine in the state gradient, dS_c^T = dS_{c+1}^T R_c + b_c^T (R_c = T_c^T), so a segment's
outgoing gradient is dS_in^T M + F^T - F from dS = 0 at its end, M = R_{c_end-1} ... R_{c_out}
(this loop on the identity with dO = 0). Grid (4 * segments, HV): bx % 4 = 0, 1 the V halves of
F, 2, 3 the row halves of M; no dhsT / dv_new / dh0 outputs. It runs for segments whose
predecessor cannot warm up; a segment whose own end can warm up, or that ends its sequence, is a
cut (F is its true outgoing gradient, M unused). F and M go to summ[seg, hv] in dS's [k][v]
layout (M thus transposed, as cp_combine reads it), the kind to kinds[seg, hv].
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, GV_ROWS, GV_TABLE_ROWS, GV_GC, GV_MISC, GV_EG, GV_KF, GV_RQS, GV_RK, GV_RA, GV_WY_AW
from common import GV_WY_AU, GV_CU, GV_CW
from common import KIND_CUT, KIND_RELATIVE, acc_transposed_layout, aw_over_au, cp_warmup_chunks, locate_item, pdl_wait, ring_barriers, variant_symbol

NAME = "bwd_dstates"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}
DTYPES = ("bfloat16", "float16")
LOG2E = 1.4426950408889634
NA = 3         # ring A (q, k: read by both warpgroups) depth
NB = 2         # ring B (dO, L, gate table: read by prep only) depth


def build(dtype: str, summary: bool = False, au: bool = False):
    """summary=False: bwd_dstates. summary=True: bwd_cp_summary, pass 1 of the exact CP correction
    for this pass (see the header): the same loop without outputs, on four column blocks
    [F | M] per segment and value head, for the segments whose predecessor cannot warm up.

    au=True (`bwd_dstates_v14`, `bwd_cp_summary_v14`; opt-in with FLASHGDN_FUSED_FWD_V14=1, not yet
    run on a GPU): the update's w term without -w~ or the Aw tile, as fused_fwd_v14 forms v~'s:
    -w~ = Aw K = Au diag(f) K with f = cw / cu, so (dv_new diag(a))^T (-w~) = (Z diag(f)) K with
    Z = (dv_new diag(a))^T Au on the state warpgroup (RS m64n64k64, rounded once where -w~ was;
    the fused-backward plan's dre_w, checked by benchmarks/emulate_reverse_roundings.py). Prep
    loses its largest GEMM (Aw K, 1 MF a chunk) and the 16 KB -w~ store, on what was the kernel's
    critical path; the state warpgroup gains one dependent GEMM and keeps its own Au ring."""
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NST = T.dynamic("NST")     # rows of dht / dh0
    NCG = T.dynamic("NCG")     # chunk rows of gvec / stats / dhsT
    NSEG = T.dynamic("NSEG")   # rows of seg_dstates (CP items with exact_cp, else 1) / of summ, kinds
    C = CHUNK
    D = HEAD_DIM
    fold_rows = dtype == "bfloat16"   # chunk_prep's WY tiles leave a_t off their rows (bf16), see common.py
    DV = HEAD_DIM // 2
    acc = "float32"

    @T.macro
    def reverse_pass(q, k, dout, wy, gvec, stats, dht, cu_seqlens, chunk_offsets, seg_offsets, dhsT, dvnew, dh0,
                     seg_dstates, summ, kinds, seq_len, num_seqs, seg_chunks, num_segs, has_dht, store_dh0,
                     cp_log_tol, exact_cp):
        with T.Kernel((4 if summary else 2) * num_segs, HV, threads=256) as (bx, hv):
            pdl_wait()
            if summary:
                is_m = (bx // 2) % 2          # 1: a row half of M (identity start, dO = 0)
                seg = bx // 4
            else:
                seg = bx // 2
            c0 = (bx % 2) * DV
            tx = T.get_thread_binding()
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
            wv = T.alloc_local((8,), acc)
            if summary:
                ix = T.alloc_local((6,), "int32")
                ix[4] = 0                                # 1: this CTA runs
                ix[5] = KIND_CUT
                ix[0] = nct - 1                          # last chunk this CTA runs (first in its order)
                if n >= 0 and c_out > 0:
                    # needed when the previous segment cannot warm up after its end (= c_out)
                    cp_warmup_chunks(stats, chunk_base, hv, c_out, 1, nct - c_out, cp_log_tol, tx, wu_s, wres, wv)
                    ix[4] = T.if_then_else(wres[0] > 0, 0, 1)
                if ix[4] != 0 and c_end < nct:
                    cp_warmup_chunks(stats, chunk_base, hv, c_end, 1, nct - c_end, cp_log_tol, tx, wu_s, wres, wv)
                    ix[5] = T.if_then_else(wres[0] > 0, KIND_CUT, KIND_RELATIVE)
                    ix[0] = T.if_then_else(wres[0] > 0, c_end + wres[0] - 1, c_end - 1)
                if is_m != 0 and ix[5] == KIND_CUT:
                    ix[4] = 0                            # a cut's M is never read
            else:
                ix = T.alloc_local((4,), "int32")
                ix[0] = nct - 1                          # last chunk this CTA runs
                if n >= 0 and c_end < nct:
                    cp_warmup_chunks(stats, chunk_base, hv, c_end, 1, nct - c_end, cp_log_tol, tx, wu_s, wres, wv)
                    ix[0] = T.if_then_else(wres[0] > 0, c_end + wres[0] - 1, T.if_then_else(exact_cp != 0, c_end - 1, nct - 1))
                ix[0] = T.if_then_else(n >= 0, ix[0], c_out - 1)   # past the last item: no chunks
            c_hi = ix[0]
            nch = T.max(c_hi - c_out + 1, 0)
            # index math hoisted into registers once (TMA coordinates would recompute divisions)
            ix[1] = hv // (HV // H)
            ix[2] = chunk_base + c_hi                    # gate-table row of the first chunk run
            ix[3] = bos + c_hi * C                       # its first token
            hk = ix[1]
            gch = ix[2]
            tokh = ix[3]

            q_s = T.alloc_shared((NA, C, D), dtype)
            k_s = T.alloc_shared((NA, C, D), dtype)
            do_s = T.alloc_shared((NB, C, DV), dtype)
            if au:
                au_s = T.alloc_shared((NB, C, C), dtype)  # Au, the state warpgroup's own ring (it loads it)
                f_s = T.alloc_shared((2, C), acc)         # f = cw / cu, from prep
                fullC = T.alloc_barrier(arrive_count=[128] * NB)
            else:
                aw_s = T.alloc_shared((NB, C, C), dtype)  # chunk_prep's gated WY tile Aw (the forward's)
                w_s = T.alloc_shared((2, C, D), dtype)    # -w      [t][k]
            tab_s = T.alloc_shared((NB, GV_TABLE_ROWS, C), acc)   # the factor rows only
            dot_s = T.alloc_shared((2, C, DV), dtype)    # dO~     [t][v] (the GEMM reads it transposed)
            # fp32 (it is added to dv_new unrounded); rows padded for conflict-free transposed reads
            dvl_s = T.alloc_shared((2, C, DV + 4), acc)  # P^T dO  [s][v]; bf16: a_s in the first pad column
            if not summary:
                dvh_s = T.alloc_shared((C, DV), dtype)   # bf16(dv_new) [t][v], on its way to dvnew
            kf_s = T.alloc_shared((2, C), acc)
            pd_s = T.alloc_shared((C,), acc)             # P_tt - bf16(P_tt): a last partial chunk only
            egl_s = T.alloc_shared((2, 1), acc)

            fullA, emptyA, fullB, emptyB, pfull, pempty = ring_barriers(NA, NB)
            if summary:
                dof = T.if_then_else(is_m != 0, 0.0, 1.0)        # M: the loop on the identity, dO = 0
                runs = ix[4] != 0
            else:
                runs = n >= 0

            if runs:
                if tx < 128:
                    # ------------------------- WG0: the state gradient -------------------------
                    dst = T.alloc_fragment((DV, D), acc)         # dS^T [v][k]
                    ds_hi = T.alloc_fragment((DV, D), dtype)
                    ds_lo = T.alloc_fragment((DV, D), dtype)
                    dvt = T.alloc_fragment((DV, C), acc)         # dv_new^T [v][t]
                    dvl_f = T.alloc_fragment((DV, C), acc)
                    dvn_bf = T.alloc_fragment((DV, C), dtype)   # the update GEMM's operand
                    if au:
                        zacc = T.alloc_fragment((DV, C), acc)    # Z = (dv_new diag(a))^T Au [v][s]
                        z_bf = T.alloc_fragment((DV, C), dtype)
                        f_f = T.alloc_fragment((C,), acc)
                    if not summary:
                        dvh_bf = T.alloc_fragment((C, DV), dtype)  # bf16(dv_new) [t][v], for the store
                        T.annotate_layout({dvh_bf: acc_transposed_layout(C, DV)})
                    kf_f = T.alloc_fragment((C,), acc)
                    if fold_rows:
                        ra_f = T.alloc_fragment((C,), acc)
                    egl = T.alloc_local((1,), acc)

                    from_end = c_hi == nct - 1                   # starts at the true end: d(final state)
                    if summary:
                        if is_m != 0:
                            for v, kk in T.Parallel(DV, D):
                                dst[v, kk] = T.if_then_else(kk == c0 + v, 1.0, 0.0)
                        else:
                            for v, kk in T.Parallel(DV, D):
                                dst[v, kk] = T.if_then_else(T.And(has_dht > 0, from_end),
                                                            dht[T.min(n, NST - 1), hv, kk, c0 + v], 0.0)
                    elif exact_cp != 0 and c_end < nct and c_hi == c_end - 1:
                        # the true gradient at the segment's end (summary variant + cp_combine)
                        for v, kk in T.Parallel(DV, D):
                            dst[v, kk] = seg_dstates[seg, hv, kk, c0 + v]
                    else:
                        for v, kk in T.Parallel(DV, D):
                            dst[v, kk] = T.if_then_else(T.And(has_dht > 0, from_end),
                                                        dht[T.min(n, NST - 1), hv, kk, c0 + v], 0.0)

                    if au:
                        for j in T.serial(T.min(nch, NB)):
                            T.tma_copy(wy[gch - j, hv, 2 * GV_WY_AU:2 * GV_WY_AU + C, 0:C], au_s[j, :, :], barrier=fullC[j])
                            T.barrier_arrive(fullC[j])
                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        sa = i % NA
                        pa = (i // NA) % 2
                        if au:
                            sc = i % NB
                            pc = (i // NB) % 2
                        if not summary:
                            t0 = tokh - i * C
                            nvalid = T.min(eos - t0, C)
                            own = c_hi - i < c_end
                        exact_ds = T.And(i == 0, from_end)
                        for v, kk in T.Parallel(DV, D):
                            ds_hi[v, kk] = T.cast(dst[v, kk], dtype)
                        # dS^T's low part only where dS is d(final state) as given: a sequence's
                        # last chunk, where a lone token's dbeta is one dot product of dv_new with
                        # v - w S (bf16-rounded operands would cost it most of its digits).
                        # Elsewhere dS is an accumulated sum and dv_new takes its bf16 rounding,
                        # like every other GEMM operand here.
                        if exact_ds:
                            for v, kk in T.Parallel(DV, D):
                                ds_lo[v, kk] = T.cast(dst[v, kk] - T.cast(ds_hi[v, kk], acc), dtype)
                        if not summary:
                            if i >= 1:
                                # the previous chunk's dS^T has left its q stage (below): release it
                                T.tma_store_wait()
                                T.barrier_arrive(emptyA[(i - 1) % NA])
                        T.barrier_wait(pfull[st], ph)
                        T.barrier_wait(fullA[sa], pa)
                        T.wgmma_gemm(ds_hi, k_s[sa, :, :], dvt, transpose_B=True, clear_accum=True)
                        if exact_ds:
                            T.wgmma_gemm(ds_lo, k_s[sa, :, :], dvt, transpose_B=True)
                        egl[0] = egl_s[st, 0]
                        for v, kk in T.Parallel(DV, D):
                            dst[v, kk] = dst[v, kk] * egl[0]
                        T.wgmma_gemm(dot_s[st, :, :], q_s[sa, :, :], dst, transpose_A=True)
                        for v, t in T.Parallel(DV, C):
                            dvl_f[v, t] = dvl_s[st, t, v]
                        T.copy(kf_s[st, :], kf_f)
                        if au:
                            T.copy(f_s[st, :], f_f)
                        if fold_rows:
                            for t in T.Parallel(C):
                                ra_f[t] = dvl_s[st, t, DV]
                        T.wait_wgmma(1)
                        if summary:
                            for v, t in T.Parallel(DV, C):
                                dvt[v, t] = dvt[v, t] * kf_f[t] + dvl_f[v, t] * dof
                        else:
                            for v, t in T.Parallel(DV, C):
                                dvt[v, t] = dvt[v, t] * kf_f[t] + dvl_f[v, t]
                        # -w = diag(a) (Aw K) for bf16 (chunk_prep's tile leaves a_t out, as the
                        # forward folds it into v~): a_t goes onto dv_new's columns here, on this
                        # warpgroup, which waits for prep anyway (prep is the critical path)
                        if fold_rows:
                            for v, t in T.Parallel(DV, C):
                                dvn_bf[v, t] = dvt[v, t] * ra_f[t]
                        else:
                            for v, t in T.Parallel(DV, C):
                                dvn_bf[v, t] = dvt[v, t]
                        if au:
                            T.barrier_wait(fullC[sc], pc)
                            T.wgmma_gemm(dvn_bf, au_s[sc, :, :], zacc, clear_accum=True)
                        else:
                            T.wgmma_gemm(dvn_bf, w_s[st, :, :], dst)
                        if not summary:
                            if own:
                                # under the update GEMM (which only reads dvn_bf); the previous
                                # chunk's store has read dvh_s (tma_store_wait at this chunk's start)
                                if nvalid == C:
                                    # transposed in registers (dvh_bf holds dvt's elements), then
                                    # stmatrix.trans (was 32 scalar 2-byte stores a thread)
                                    for t, v in T.Parallel(C, DV):
                                        dvh_bf[t, v] = T.cast(dvt[v, t], dtype)
                                    T.copy(dvh_bf, dvh_s)
                                    T.tma_copy(dvh_s, dvnew[t0:t0 + C, hv, 2 * c0:2 * c0 + DV])
                                else:
                                    for v, t in T.Parallel(DV, C):
                                        if t < nvalid:
                                            dvh = T.cast(dvt[v, t], dtype)
                                            dvnew[t0 + t, hv, 2 * c0 + v] = dvh
                                            dvnew[t0 + t, hv, 2 * c0 + DV + v] = T.cast(dvt[v, t] - T.cast(dvh, acc), dtype)
                        if au:
                            # the w term: (Z diag(f)) K, Z's columns scaled before its one rounding
                            T.wait_wgmma(0)
                            for v, s_ in T.Parallel(DV, C):
                                z_bf[v, s_] = zacc[v, s_] * f_f[s_]
                            T.wgmma_gemm(z_bf, k_s[sa, :, :], dst)
                            # Au ring: this warpgroup is its only reader, chunk i + NB into the stage
                            if i + NB < nch:
                                T.tma_copy(wy[gch - i - NB, hv, 2 * GV_WY_AU:2 * GV_WY_AU + C, 0:C], au_s[sc, :, :],
                                           barrier=fullC[sc])
                                T.barrier_arrive(fullC[sc])
                        T.wait_wgmma(0)
                        T.barrier_arrive(pempty[st])
                        if summary:
                            T.barrier_arrive(emptyA[sa])
                        elif own:
                            # dS^T (as the dv_new GEMM used it) -> dhsT through this chunk's q
                            # stage, dead now (WG1 read it a chunk ago), by TMA: no stores from
                            # registers on the recurrence. The stage is released at the next
                            # chunk's start, once the store has read it.
                            T.copy(ds_hi, q_s[sa, :, :])
                            T.tma_copy(q_s[sa, :, :], dhsT[gch - i, hv, c0:c0 + DV, 0:D])

                    if not summary:
                        T.tma_store_wait()
                    if summary:
                        # dS^T in dS's [k][v] layout (M transposed, as cp_combine reads it)
                        for v, kk in T.Parallel(DV, D):
                            summ[seg, hv, kk, is_m * D + c0 + v] = dst[v, kk]
                        if tx == 0 and bx % 4 == 0:
                            kinds[seg, hv] = ix[5]
                    elif store_dh0 > 0 and c_out == 0:
                        for v, kk in T.Parallel(DV, D):
                            dh0[T.min(n, NST - 1), hv, kk, c0 + v] = dst[v, kk]

                else:
                    # ------------- WG1: prep (one chunk ahead of WG0) and the TMA loads -------------
                    if not au:
                        wacc = T.alloc_fragment((C, D), acc)
                    pacc = T.alloc_fragment((C, C), acc)         # (K Q^T)[s][t]
                    ptb = T.alloc_fragment((C, C), dtype)
                    dvacc = T.alloc_fragment((C, DV), acc)       # P^T dO [s][v]
                    gr_f = T.alloc_fragment((C,), acc)           # gc by row (s)
                    gcol_f = T.alloc_fragment((C,), acc)         # gc by column (t)
                    rk_f = T.alloc_fragment((C,), acc)
                    rqs_f = T.alloc_fragment((C,), acc)
                    dot_f = T.alloc_fragment((C, DV), dtype)     # the scaled dO~ on its way to dot_s

                    for j in T.serial(T.min(nch, 2)):
                        T.tma_copy(q[tokh - j * C:tokh - j * C + C, hk, 0:D], q_s[j, :, :], barrier=fullA[j])
                        T.tma_copy(k[tokh - j * C:tokh - j * C + C, hk, 0:D], k_s[j, :, :], barrier=fullA[j])
                        T.barrier_arrive(fullA[j])
                        T.tma_copy(dout[tokh - j * C:tokh - j * C + C, hv, c0:c0 + DV], do_s[j, :, :], barrier=fullB[j])
                        if not au:
                            T.tma_copy(wy[gch - j, hv, 2 * GV_WY_AW:2 * GV_WY_AW + C, 0:C], aw_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(gvec[gch - j, hv, 0:GV_TABLE_ROWS, 0:C], tab_s[j, :, :], barrier=fullB[j])
                        T.barrier_arrive(fullB[j])

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        sa = i % NA
                        pa = (i // NA) % 2
                        sb = i % NB
                        pb = (i // NB) % 2
                        T.barrier_wait(fullB[sb], pb)
                        T.barrier_wait(fullA[sa], pa)
                        # -w (up to a_t, bf16) = Aw K from chunk_prep's tile: Aw = (G * L) diag(cw),
                        # cw = -exp(.) beta rk, 0 past the sequence end (beta = 0 there)
                        if not au:
                            T.wgmma_gemm(aw_s[sb, :, :], k_s[sa, :, :], wacc, clear_accum=True)
                        T.wgmma_gemm(k_s[sa, :, :], q_s[sa, :, :], pacc, transpose_B=True, clear_accum=True)
                        T.copy(tab_s[sb, GV_GC, :], gr_f)
                        T.copy(tab_s[sb, GV_GC, :], gcol_f)
                        T.copy(tab_s[sb, GV_RK, :], rk_f)
                        T.copy(tab_s[sb, GV_RQS, :], rqs_f)
                        T.barrier_wait(pempty[st], (ph + 1) % 2)
                        # row-scaled copy in dO's own layout (a transposed copy cost 2-byte shared
                        # loads per element); the state's GEMM takes it transposed
                        # formed in registers, then stored, as bwd_local's passes are (v8a): with the
                        # store inside the pass each 16-byte step's loads wait for the previous
                        # step's store. Measured here (v8c) it changed nothing (250 registers, no
                        # spills); kept so that the passes of the two kernels read alike
                        if summary:
                            for t, v in T.Parallel(C, DV):
                                dot_f[t, v] = T.cast(
                                    T.cast(do_s[sb, t, v], acc) * (tab_s[sb, GV_EG, t] * tab_s[sb, GV_RQS, t]) * dof,
                                    dtype)
                        else:
                            for t, v in T.Parallel(C, DV):
                                dot_f[t, v] = T.cast(
                                    T.cast(do_s[sb, t, v], acc) * (tab_s[sb, GV_EG, t] * tab_s[sb, GV_RQS, t]), dtype)
                        T.copy(dot_f, dot_s[st, :, :])
                        if tx - 128 < C:
                            kf_s[st, tx - 128] = tab_s[sb, GV_KF, tx - 128]
                            if au:
                                f_s[st, tx - 128] = aw_over_au(tab_s[sb, GV_CU, tx - 128], tab_s[sb, GV_CW, tx - 128])
                            if fold_rows:
                                # a_t, the row factor Aw's tile leaves out: in dvl_s's padding (no
                                # shared memory is left for a buffer of its own)
                                dvl_s[st, tx - 128, DV] = tab_s[sb, GV_RA, tx - 128]
                        if tx == 128:
                            egl_s[st, 0] = tab_s[sb, GV_MISC, 0]
                        if not au:
                            T.wait_wgmma(1)
                            for t, kk in T.Parallel(C, D):
                                w_s[st, t, kk] = T.cast(wacc[t, kk], dtype)
                        T.wait_wgmma(0)
                        # rows past the end: rq scale = 0 masks their columns t (and s <= t).
                        # exp(gc_t - gc_s) = a_t / a_s (chunk_prep's a_t = exp(gc_t - r)) while the
                        # chunk decays by less than 80 ("rank-1": no exp per element); else per element
                        if tab_s[sb, GV_MISC, 1] > 0.5:
                            for s_ in T.Parallel(C):
                                gr_f[s_] = tab_s[sb, GV_RK, s_] / tab_s[sb, GV_RA, s_]
                            for t_ in T.Parallel(C):
                                gcol_f[t_] = tab_s[sb, GV_RA, t_] * tab_s[sb, GV_RQS, t_]
                            for s, t in T.Parallel(C, C):
                                ptb[s, t] = T.if_then_else(s <= t, pacc[s, t] * gcol_f[t] * gr_f[s], 0.0)
                        else:
                            for s, t in T.Parallel(C, C):
                                ptb[s, t] = T.if_then_else(
                                    s <= t, pacc[s, t] * T.exp2(T.min(gcol_f[t] - gr_f[s], 0.0) * LOG2E) * rqs_f[t] * rk_f[s],
                                    0.0)
                        T.wgmma_gemm(ptb, do_s[sb, :, :], dvacc, clear_accum=True)
                        # A sequence's last, partial chunk: P's diagonal back to fp32 (a lone
                        # token's dv_new is dS K kf + P_tt dO, and its dbeta one dot product of it
                        # that cancellation can strip of the digits P_tt's bf16 rounding leaves)
                        lastp = T.And(T.And(i == 0, c_hi == nct - 1), (eos - bos) % C != 0)
                        if lastp:
                            for s, t in T.Parallel(C, C):
                                if s == t:
                                    pd_s[s] = pacc[s, t] * rqs_f[t] * rk_f[s] - T.cast(ptb[s, t], acc)
                        T.wait_wgmma(0)
                        T.copy(dvacc, dvl_s[st, :, 0:DV])
                        if lastp:
                            T.sync_threads(6, 128)     # WG1 only (TileLang's own partial syncs use 3, 4)
                            for s, v in T.Parallel(C, DV):
                                dvl_s[st, s, v] = dvl_s[st, s, v] + pd_s[s] * T.cast(do_s[sb, s, v], acc)
                        T.fence_proxy_async()
                        T.barrier_arrive(pfull[st])
                        T.barrier_arrive(emptyA[sa])
                        T.barrier_arrive(emptyB[sb])
                        # Refills, as in fused_fwd: ring B (prep's own) takes chunk i+2 once this
                        # warpgroup has arrived; ring A takes it into the stage chunk i-1 used once
                        # the state warpgroup has released that too.
                        if i + 2 < nch:
                            T.barrier_wait(emptyB[sb], pb)
                            T.tma_copy(dout[tokh - (i + 2) * C:tokh - (i + 2) * C + C, hv, c0:c0 + DV], do_s[sb, :, :],
                                       barrier=fullB[sb])
                            if not au:
                                T.tma_copy(wy[gch - i - 2, hv, 2 * GV_WY_AW:2 * GV_WY_AW + C, 0:C], aw_s[sb, :, :],
                                           barrier=fullB[sb])
                            T.tma_copy(gvec[gch - i - 2, hv, 0:GV_TABLE_ROWS, 0:C], tab_s[sb, :, :], barrier=fullB[sb])
                            T.barrier_arrive(fullB[sb])
                            if i >= 1:
                                T.barrier_wait(emptyA[(i + 2) % NA], ((i - 1) // NA) % 2)
                            T.tma_copy(q[tokh - (i + 2) * C:tokh - (i + 2) * C + C, hk, 0:D], q_s[(i + 2) % NA, :, :],
                                       barrier=fullA[(i + 2) % NA])
                            T.tma_copy(k[tokh - (i + 2) * C:tokh - (i + 2) * C + C, hk, 0:D], k_s[(i + 2) % NA, :, :],
                                       barrier=fullA[(i + 2) % NA])
                            T.barrier_arrive(fullA[(i + 2) % NA])

    if summary:
        @T.prim_func
        def bwd_cp_summary(
            q: T.Tensor((Ttot, H, D), dtype),
            k: T.Tensor((Ttot, H, D), dtype),
            dout: T.Tensor((Ttot, HV, D), dtype),
            wy: T.Tensor((NCG, HV, 2 * GV_ROWS, C), dtype),   # gvec's memory in the input dtype (the WY tiles)
            gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
            stats: T.Tensor((NCG, HV, 2), "float32"),
            dht: T.Tensor((NST, HV, D, D), "float32"),
            cu_seqlens: T.Tensor((NS1,), "int32"),
            chunk_offsets: T.Tensor((NS1,), "int32"),
            seg_offsets: T.Tensor((NS1,), "int32"),
            summ: T.Tensor((NSEG, HV, D, 2 * D), "float32"),
            kinds: T.Tensor((NSEG, HV), "int32"),
            seq_len: T.int32,
            num_seqs: T.int32,
            seg_chunks: T.int32,
            num_segs: T.int32,
            has_dht: T.int32,
            cp_log_tol: T.float32,
        ):
            reverse_pass(q, k, dout, wy, gvec, stats, dht, cu_seqlens, chunk_offsets, seg_offsets, None, None, None,
                         None, summ, kinds, seq_len, num_seqs, seg_chunks, num_segs, has_dht, None, cp_log_tol, None)

        return bwd_cp_summary

    @T.prim_func
    def bwd_dstates(
        q: T.Tensor((Ttot, H, D), dtype),
        k: T.Tensor((Ttot, H, D), dtype),
        dout: T.Tensor((Ttot, HV, D), dtype),
        wy: T.Tensor((NCG, HV, 2 * GV_ROWS, C), dtype),       # gvec's memory in the input dtype (the WY tiles)
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        stats: T.Tensor((NCG, HV, 2), "float32"),
        dht: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        dhsT: T.Tensor((NCG, HV, D, D), dtype),
        dvnew: T.Tensor((Ttot, HV, 2 * D), dtype),      # dv_new as high / low planes per V half
        dh0: T.Tensor((NST, HV, D, D), "float32"),
        seg_dstates: T.Tensor((NSEG, HV, D, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        has_dht: T.int32,
        store_dh0: T.int32,
        cp_log_tol: T.float32,
        exact_cp: T.int32,
    ):
        reverse_pass(q, k, dout, wy, gvec, stats, dht, cu_seqlens, chunk_offsets, seg_offsets, dhsT, dvnew, dh0,
                     seg_dstates, None, None, seq_len, num_seqs, seg_chunks, num_segs, has_dht, store_dh0,
                     cp_log_tol, exact_cp)

    return bwd_dstates


def variants():
    """bwd_dstates and its summary variant (symbols fgdn_bwd_dstates_* / fgdn_bwd_cp_summary_*), and
    both with build's au=True (fgdn_bwd_dstates_v14_* / fgdn_bwd_cp_summary_v14_*, opt-in)."""
    return [(variant_symbol(name, dt, "float32"), dict(dtype=dt, summary=summary, au=au))
            for name, summary, au in (("bwd_dstates", False, False), ("bwd_cp_summary", True, False),
                                      ("bwd_dstates_v14", False, True), ("bwd_cp_summary_v14", True, True))
            for dt in DTYPES]
