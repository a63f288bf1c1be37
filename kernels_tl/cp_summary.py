"""cp_summary: pass 1 of the exact intra-card CP correction (tool (a), docs/context-parallelism.md).

For every segment whose successor cannot warm up (the look-back test of fused_fwd fails at the
segment's end), the segment's affine summary S_out = F + M S_in:

  F [K, V]  the state at the segment's end when the pass starts from zero at its first chunk
  M [K, K]  the product of its chunk transitions T_c = exp(gc_last) I - Kd^T w

M is the same recurrence run on the identity with u = 0 (T_c is what the state update does to
S when v = 0), so both come from fused_fwd's state loop without the outputs. A segment whose own
start can warm up (or the sequence's first segment) is a *cut*: F is then the true outgoing
state (warm-up from zero, or h0) and M is not needed - the combine stops its walk there.

Grid (4 * segments, HV), 256 threads = 2 warpgroups, per chunk c (64 tokens):
  bx % 4 = column block: 0, 1 = V halves of F; 2, 3 = K halves of M (identity columns, u = 0)
  WG1 prep (one chunk ahead): TMA rings k (3 deep) and v, L, gate table (2 deep);
      u~ = L diag(cu) V (m64n64k64, zero for M's blocks), -w~ = L diag(cw) K (m64n128k64)
  WG0 state (S^T [64 cols x 128 K] fp32 in registers):
      v~^T = u~^T + S^T (-w~)^T   (m64n64k128);   S^T = exp(gc_last) S^T + (v~^T diag(dec)) K (m64n128k64)
No q, no P~, no outputs: at the end S^T goes to summ[seg, hv, :, block] (fp32) and
kinds[seg, hv] = 1 (cut) or 2 (relative: needs the previous segment's state).
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, KIND_CUT, KIND_RELATIVE, cp_warmup_chunks, locate_item, ring_barriers, variant_symbol
from common import GV_ROWS, GV_FWD_ROWS, GV_DEC, GV_CU, GV_CW, GV_RA, GV_GC, GV_MISC

NAME = "cp_summary"
DTYPES = ("bfloat16", "float16")
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: True}
LOG2E = 1.4426950408889634
NA = 3
NB = 2


def build(dtype: str):
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")
    NST = T.dynamic("NST")
    NCG = T.dynamic("NCG")
    NSEG = T.dynamic("NSEG")
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"
    fold_rows = dtype == "bfloat16"

    @T.prim_func
    def cp_summary(
        k: T.Tensor((Ttot, H, D), dtype),
        v: T.Tensor((Ttot, HV, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        stats: T.Tensor((NCG, HV, 2), "float32"),
        h0: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        summ: T.Tensor((NSEG, HV, D, 2 * D), "float32"),
        kinds: T.Tensor((NSEG, HV), "int32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        has_h0: T.int32,
        cp_log_tol: T.float32,
    ):
        with T.Kernel(4 * num_segs, HV, threads=256) as (bx, hv):
            vh = bx % 2
            is_m = (bx // 2) % 2          # 1: a K half of M (identity start, u = 0)
            seg = bx // 4
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            locate_item(seg, seg_chunks, 1, seq_len, num_seqs, cu_seqlens, seg_offsets, loc, 21)
            n = loc[0]
            bos = loc[1]
            eos = loc[2]
            nct = T.ceildiv(eos - bos, C)
            c_out = loc[3] * seg_chunks
            c_end = T.min(c_out + seg_chunks, nct)
            chunk_base = T.if_then_else(seq_len > 0, n * nct, chunk_offsets[T.max(n, 0)])
            c0 = vh * DV

            # needed only when the next segment cannot warm up (the test fused_fwd and
            # cp_combine make at its start, on the same stats)
            wu_s = T.alloc_shared((2, 64), acc)
            wres = T.alloc_shared((1,), "int32")
            wv = T.alloc_local((8,), acc)
            ix = T.alloc_local((6,), "int32")
            ix[4] = 0                                    # 1: this CTA runs
            ix[5] = KIND_CUT
            ix[3] = c_out
            if n >= 0 and c_end < nct:
                cp_warmup_chunks(stats, chunk_base, hv, c_end - 1, -1, c_end, cp_log_tol, tx, wu_s, wres, wv)
                ix[4] = T.if_then_else(wres[0] > 0, 0, 1)
            if ix[4] != 0 and c_out > 0:
                # own start: warm up from zero when provable (a cut), else relative to S_in
                cp_warmup_chunks(stats, chunk_base, hv, c_out - 1, -1, c_out, cp_log_tol, tx, wu_s, wres, wv)
                ix[5] = T.if_then_else(wres[0] > 0, KIND_CUT, KIND_RELATIVE)
                ix[3] = T.if_then_else(wres[0] > 0, c_out - wres[0], c_out)
            if is_m != 0 and ix[5] == KIND_CUT:
                ix[4] = 0                                # a cut's M is never read
            run = ix[4]
            kind = ix[5]
            c_begin = ix[3]
            nch = c_end - c_begin
            ix[0] = hv // (HV // H)
            ix[1] = chunk_base + c_begin
            ix[2] = bos + c_begin * C
            hk = ix[0]
            gch0 = ix[1]
            tok0 = ix[2]

            k_s = T.alloc_shared((NA, C, D), dtype)
            v_s = T.alloc_shared((NB, C, DV), dtype)
            L_s = T.alloc_shared((NB, C, C), dtype)
            tab_s = T.alloc_shared((NB, GV_FWD_ROWS, C), acc)
            u_s = T.alloc_shared((2, C, DV + 4), acc)
            w_s = T.alloc_shared((2, C, D), dtype)
            dec_s = T.alloc_shared((2, C), acc)
            egl_s = T.alloc_shared((2, 1), acc)
            T.annotate_layout({L_s: tilelang.layout.make_swizzled_layout(L_s)})

            fullA, emptyA, fullB, emptyB, pfull, pempty = ring_barriers(NA, NB)

            if run != 0:
                if tx < 128:
                    # ------------------------------ WG0: state ------------------------------
                    S = T.alloc_fragment((DV, D), acc)          # S^T [c][k]
                    S_bf = T.alloc_fragment((DV, D), dtype)
                    vacc = T.alloc_fragment((DV, C), acc)
                    ut = T.alloc_fragment((DV, C), acc)
                    vnd_bf = T.alloc_fragment((DV, C), dtype)
                    dec_f = T.alloc_fragment((C,), acc)
                    egl = T.alloc_local((1,), acc)

                    if is_m != 0:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = T.if_then_else(kk == c0 + c, 1.0, 0.0)
                    elif has_h0 != 0 and c_begin == 0:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = h0[n, hv, kk, c0 + c]
                    else:
                        T.clear(S)

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        sa = i % NA
                        pa = (i // NA) % 2
                        T.copy(S, S_bf)
                        T.barrier_wait(pfull[st], ph)
                        T.barrier_wait(fullA[sa], pa)
                        T.wgmma_gemm(S_bf, w_s[st, :, :], vacc, transpose_B=True, clear_accum=True)
                        for c, t in T.Parallel(DV, C):
                            ut[c, t] = u_s[st, t, c]
                        T.copy(dec_s[st, :], dec_f)
                        egl[0] = egl_s[st, 0]
                        T.wait_wgmma(0)
                        for c, t in T.Parallel(DV, C):
                            vnd_bf[c, t] = (vacc[c, t] + ut[c, t]) * dec_f[t]
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = S[c, kk] * egl[0]
                        T.wgmma_gemm(vnd_bf, k_s[sa, :, :], S)
                        T.wait_wgmma(0)
                        T.barrier_arrive(emptyA[sa])
                        T.barrier_arrive(pempty[st])

                    for c, kk in T.Parallel(DV, D):
                        summ[seg, hv, kk, is_m * D + c0 + c] = S[c, kk]
                    if tx == 0 and bx % 4 == 0:
                        kinds[seg, hv] = kind
                else:
                    # ------------------- WG1: prep (one chunk ahead): u~, -w~ -------------------
                    Lb = T.alloc_fragment((C, C), dtype)
                    Au = T.alloc_fragment((C, C), dtype)
                    Aw = T.alloc_fragment((C, C), dtype)
                    uacc = T.alloc_fragment((C, DV), acc)
                    wacc = T.alloc_fragment((C, D), acc)
                    cu_f = T.alloc_fragment((C,), acc)
                    cw_f = T.alloc_fragment((C,), acc)
                    ra_f = T.alloc_fragment((C,), acc)
                    gr_f = T.alloc_fragment((C,), acc)
                    gcol_f = T.alloc_fragment((C,), acc)
                    # M's blocks: u = 0 (T_c acts on S as the update does with v = 0)
                    ucol = T.if_then_else(is_m != 0, 0.0, 1.0)

                    for j in T.serial(T.min(nch, 2)):
                        T.tma_copy(k[tok0 + j * C:tok0 + j * C + C, hk, 0:D], k_s[j, :, :], barrier=fullA[j])
                        T.barrier_arrive(fullA[j])
                        T.tma_copy(v[tok0 + j * C:tok0 + j * C + C, hv, c0:c0 + DV], v_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(L[tok0 + j * C:tok0 + j * C + C, hv, 0:C], L_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(gvec[gch0 + j, hv, 0:GV_FWD_ROWS, 0:C], tab_s[j, :, :], barrier=fullB[j])
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
                        rank1 = tab_s[sb, GV_MISC, 1] > 0.5
                        for s in T.Parallel(C):
                            cu_f[s] = tab_s[sb, GV_CU, s] * ucol
                        T.copy(tab_s[sb, GV_CW, :], cw_f)
                        T.copy(L_s[sb, :, :], Lb)
                        if rank1:
                            if fold_rows:
                                for t, s in T.Parallel(C, C):
                                    Au[t, s] = T.cast(Lb[t, s], acc) * cu_f[s]
                            else:
                                T.copy(tab_s[sb, GV_RA, :], ra_f)
                                for t, s in T.Parallel(C, C):
                                    Au[t, s] = T.cast(Lb[t, s], acc) * ra_f[t] * cu_f[s]
                        else:
                            T.copy(tab_s[sb, GV_GC, :], gr_f)
                            T.copy(tab_s[sb, GV_GC, :], gcol_f)
                            for t, s in T.Parallel(C, C):
                                Au[t, s] = T.cast(Lb[t, s], acc) * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * cu_f[s]
                        T.barrier_wait(pempty[st], (ph + 1) % 2)
                        T.wgmma_gemm(Au, v_s[sb, :, :], uacc, clear_accum=True)
                        if rank1:
                            if fold_rows:
                                for t, s in T.Parallel(C, C):
                                    Aw[t, s] = T.cast(Lb[t, s], acc) * cw_f[s]
                            else:
                                for t, s in T.Parallel(C, C):
                                    Aw[t, s] = T.cast(Lb[t, s], acc) * ra_f[t] * cw_f[s]
                        else:
                            for t, s in T.Parallel(C, C):
                                Aw[t, s] = T.cast(Lb[t, s], acc) * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * cw_f[s]
                        T.wgmma_gemm(Aw, k_s[sa, :, :], wacc, clear_accum=True)
                        T.wait_wgmma(1)
                        T.copy(uacc, u_s[st, :, 0:DV])
                        T.wait_wgmma(0)
                        T.copy(wacc, w_s[st, :, :])
                        if tx - 128 < C:
                            dec_s[st, tx - 128] = tab_s[sb, GV_DEC, tx - 128]
                        if tx == 128:
                            egl_s[st, 0] = tab_s[sb, GV_MISC, 0]
                        T.fence_proxy_async()
                        T.barrier_arrive(pfull[st])
                        T.barrier_arrive(emptyA[sa])
                        T.barrier_arrive(emptyB[sb])
                        if i + 2 < nch:
                            T.barrier_wait(emptyB[sb], pb)
                            T.tma_copy(v[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hv, c0:c0 + DV], v_s[sb, :, :], barrier=fullB[sb])
                            T.tma_copy(L[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hv, 0:C], L_s[sb, :, :], barrier=fullB[sb])
                            T.tma_copy(gvec[gch0 + i + 2, hv, 0:GV_FWD_ROWS, 0:C], tab_s[sb, :, :], barrier=fullB[sb])
                            T.barrier_arrive(fullB[sb])
                            if i >= 1:
                                T.barrier_wait(emptyA[(i + 2) % NA], ((i - 1) // NA) % 2)
                            T.tma_copy(k[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hk, 0:D], k_s[(i + 2) % NA, :, :], barrier=fullA[(i + 2) % NA])
                            T.barrier_arrive(fullA[(i + 2) % NA])

    return cp_summary


def variants():
    return [(variant_symbol(NAME, dt, "float32"), dict(dtype=dt)) for dt in DTYPES]
