"""fused_fwd: the gated-delta-rule forward over the chunks of one segment, one CTA per
(segment, value head, half of V).

Grid (2, HV, segments); 384 threads = 3 warpgroups, warp-specialised, 2-stage pipelines:

  WG2 producer (40 regs)  warp 0: TMA q, k [64,128] (q/k head of the GVA group), v [64,64]
                          (this CTA's half of V), L [64,64] (chunk_prep's gate-free inverse);
                          warp 1: g, beta [64] (plain loads, zeroed past the sequence end).
  WG1 prep (tensor cores for chunk c while WG0 works on c-1):
        gc   = chunk-local cumsum of g                     (one warp, shuffle scan)
        Af   = (G * L) diag(beta)      G_ts = exp(gc_t - gc_s), s <= t   (fp32, registers)
        u'^T = (Af V)^T   -> smem [64c x 64t]               wgmma RS m64n64k64
        -w'  = -(Af diag(exp(gc) rk) K) -> smem [64t x 128] wgmma RS m64n128k64
        P    = scale (G * Q K^T) diag(rq)..diag(rk)  -> smem wgmma SS m64n64k128
        dec_t = exp(gc_last - gc_t) rk_t valid_t, og_t = scale exp(gc_t) rq_t, exp(gc_last)
  WG0 state (the recurrence; holds S^T [64 V cols x 128 K] fp32 in registers, 240 regs):
        v_new^T = u'^T + S^T (-w')^T          wgmma RS m64n64k128  (A = S^T from registers)
        S^T     = exp(gc_last) S^T + (v_new^T diag(dec)) K       wgmma RS m64n128k64
        o^T     = diag(og)-scaled S_old^T Q^T + v_new^T P^T       wgmma RS m64n64k128 + k64
        o -> smem -> TMA store (masked plain stores for a partial last chunk).

The critical path per chunk is two register-sourced GEMMs on WG0; everything that does not
depend on the state (the WY products, Q K^T, gate factors) runs one chunk ahead on WG1.
In-kernel L2 norm of q/k is folded into the diagonal factors rq, rk (no normalised copies).
Barriers: full/empty (producer <-> consumers), pfull/pempty (prep <-> state), 2 stages each.
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, IO_VARIANTS, locate_item, variant_symbol

NAME = "fused_fwd"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: True}
LOG2E = 1.4426950408889634
L2NORM_EPS = 1e-6


def build(dtype: str, beta_dtype: str):
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")     # sequences + 1
    NST = T.dynamic("NST")     # rows of h0 / ht (sequences, or 1 when unused)
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2         # V columns per CTA
    acc = "float32"
    # bf16 has fp32's exponent range, so the row factor a_t can be folded into v~ = v_new / a_t
    # (up to e^40 larger); fp16 (max 65504) cannot hold that, so there a_t is applied to the
    # rows of L and P element by element instead.
    fold_rows = dtype == "bfloat16"
    NSTAGE = 3     # input ring depth: the refill of chunk i+3 goes out when chunk i is done

    @T.prim_func
    def fused_fwd(
        q: T.Tensor((Ttot, H, D), dtype),
        k: T.Tensor((Ttot, H, D), dtype),
        v: T.Tensor((Ttot, HV, D), dtype),
        L: T.Tensor((Ttot, HV, C), dtype),
        g: T.Tensor((Ttot, HV), "float32"),
        beta: T.Tensor((Ttot, HV), beta_dtype),
        h0: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        o: T.Tensor((Ttot, HV, D), dtype),
        ht: T.Tensor((NST, HV, D, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        has_h0: T.int32,
        store_final: T.int32,
        use_l2norm: T.int32,
        scale: T.float32,
    ):
        # x = 2 * segment + V half (the two halves of a head run side by side and share q/k/L
        # in L2); y = value head. Segments go on x because grid y/z stop at 65535.
        with T.Kernel(2 * num_segs, HV, threads=256) as (bx, hv):
            vh = bx % 2
            seg = bx // 2
            tx = T.get_thread_binding()
            loc = T.alloc_local((6,), "int32")
            locate_item(seg, seg_chunks, 1, seq_len, num_seqs, cu_seqlens, seg_offsets, loc, 21)
            n = loc[0]
            bos = loc[1]
            eos = loc[2]
            nct = T.ceildiv(eos - bos, C)
            c_begin = loc[3] * seg_chunks
            c_end = T.min(c_begin + seg_chunks, nct)
            nch = T.max(c_end - c_begin, 0)
            hk = hv // (HV // H)
            c0 = vh * DV

            # inputs: NSTAGE-deep ring (TMA); prep outputs: double-buffered
            q_s = T.alloc_shared((NSTAGE, C, D), dtype)
            k_s = T.alloc_shared((NSTAGE, C, D), dtype)
            v_s = T.alloc_shared((NSTAGE, C, DV), dtype)
            L_s = T.alloc_shared((NSTAGE, C, C), dtype)
            g_s = T.alloc_shared((C,), acc)             # prep warpgroup's own g, beta (one chunk)
            b_s = T.alloc_shared((C,), acc)
            # prep -> state, per stage
            u_s = T.alloc_shared((2, C, DV + 8), dtype)  # u~ [t][c], rows padded: conflict-free both ways
            w_s = T.alloc_shared((2, C, D), dtype)      # -w~   [t][k]
            p_s = T.alloc_shared((2, C, C), dtype)      # P~    [t][s]
            dec_s = T.alloc_shared((2, C), acc)
            og_s = T.alloc_shared((2, C), acc)
            egl_s = T.alloc_shared((2, 1), acc)
            # prep warpgroup scratch (one chunk)
            ra_s = T.alloc_shared((C,), acc)            # a_t = exp(gc_t - gc_m)
            cu_s = T.alloc_shared((C,), acc)
            cw_s = T.alloc_shared((C,), acc)
            gc_s = T.alloc_shared((C,), acc)
            rq_s = T.alloc_shared((C,), acc)
            rk_s = T.alloc_shared((C,), acc)
            cp_s = T.alloc_shared((C,), acc)
            rp_s = T.alloc_shared((C,), acc)
            o_s = T.alloc_shared((C, DV), dtype)

            full = T.alloc_barrier(arrive_count=[128] * NSTAGE)
            empty = T.alloc_barrier(arrive_count=[256] * NSTAGE)
            pfull = T.alloc_barrier(arrive_count=[128, 128])
            pempty = T.alloc_barrier(arrive_count=[128, 128])

            if n >= 0:
                if tx < 128:
                    # ------------- WG0: state; also refills the input stages by TMA -------------
                    # (it is the last consumer of every stage, so it refills a stage as soon as it
                    # has finished with it: the same point a separate producer would wait for)
                    S = T.alloc_fragment((DV, D), acc)          # S^T [c][k]
                    S_bf = T.alloc_fragment((DV, D), dtype)
                    vacc = T.alloc_fragment((DV, C), acc)       # v~^T [c][t]
                    vn_bf = T.alloc_fragment((DV, C), dtype)
                    vnd_bf = T.alloc_fragment((DV, C), dtype)
                    oacc = T.alloc_fragment((DV, C), acc)       # o^T [c][t]: S Q^T part
                    oacc2 = T.alloc_fragment((DV, C), acc)      # o^T: P~ v~ part
                    dec_f = T.alloc_fragment((C,), acc)
                    og_f = T.alloc_fragment((C,), acc)
                    egl = T.alloc_local((1,), acc)

                    for j in T.serial(T.min(nch, NSTAGE)):
                        T.tma_copy(q[bos + (c_begin + j) * C:bos + (c_begin + j) * C + C, hk, 0:D], q_s[j, :, :], barrier=full[j])
                        T.tma_copy(k[bos + (c_begin + j) * C:bos + (c_begin + j) * C + C, hk, 0:D], k_s[j, :, :], barrier=full[j])
                        T.tma_copy(v[bos + (c_begin + j) * C:bos + (c_begin + j) * C + C, hv, c0:c0 + DV], v_s[j, :, :], barrier=full[j])
                        T.tma_copy(L[bos + (c_begin + j) * C:bos + (c_begin + j) * C + C, hv, 0:C], L_s[j, :, :], barrier=full[j])
                        T.barrier_arrive(full[j])
                    if has_h0 != 0 and c_begin == 0:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = h0[n, hv, kk, c0 + c]
                    else:
                        T.clear(S)

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        si = i % NSTAGE
                        pi = (i // NSTAGE) % 2
                        t0 = bos + (c_begin + i) * C
                        nvalid = T.min(eos - t0, C)
                        T.copy(S, S_bf)
                        T.barrier_wait(pfull[st], ph)
                        T.barrier_wait(full[si], pi)
                        for c, t in T.Parallel(DV, C):
                            vacc[c, t] = u_s[st, t, c]
                        T.copy(dec_s[st, :], dec_f)
                        T.copy(og_s[st, :], og_f)
                        egl[0] = egl_s[st, 0]
                        T.wgmma_gemm(S_bf, w_s[st, :, :], vacc, transpose_B=True)
                        T.wait_wgmma(0)
                        for c, t in T.Parallel(DV, C):
                            vnd_bf[c, t] = vacc[c, t] * dec_f[t]
                        for c, t in T.Parallel(DV, C):
                            vn_bf[c, t] = vacc[c, t]
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = S[c, kk] * egl[0]
                        # three GEMMs back to back on the tensor cores; one wait
                        T.wgmma_gemm(vnd_bf, k_s[si, :, :], S)
                        T.wgmma_gemm(S_bf, q_s[si, :, :], oacc, transpose_B=True, clear_accum=True)
                        T.wgmma_gemm(vn_bf, p_s[st, :, :], oacc2, transpose_B=True, clear_accum=True)
                        T.wait_wgmma(0)
                        T.barrier_arrive(empty[si])
                        T.barrier_arrive(pempty[st])
                        if i + NSTAGE < nch:
                            T.barrier_wait(empty[si], pi)
                            T.tma_copy(q[bos + (c_begin + i + NSTAGE) * C:bos + (c_begin + i + NSTAGE) * C + C, hk, 0:D], q_s[si, :, :], barrier=full[si])
                            T.tma_copy(k[bos + (c_begin + i + NSTAGE) * C:bos + (c_begin + i + NSTAGE) * C + C, hk, 0:D], k_s[si, :, :], barrier=full[si])
                            T.tma_copy(v[bos + (c_begin + i + NSTAGE) * C:bos + (c_begin + i + NSTAGE) * C + C, hv, c0:c0 + DV], v_s[si, :, :], barrier=full[si])
                            T.tma_copy(L[bos + (c_begin + i + NSTAGE) * C:bos + (c_begin + i + NSTAGE) * C + C, hv, 0:C], L_s[si, :, :], barrier=full[si])
                            T.barrier_arrive(full[si])
                        for c, t in T.Parallel(DV, C):
                            oacc[c, t] = oacc[c, t] * og_f[t] + oacc2[c, t]
                        if nvalid == C:
                            for c, t in T.Parallel(DV, C):
                                o_s[t, c] = oacc[c, t]
                            T.copy(o_s, o[t0:t0 + C, hv, c0:c0 + DV])
                        else:
                            for c, t in T.Parallel(DV, C):
                                if t < nvalid:
                                    o[t0 + t, hv, c0 + c] = oacc[c, t]

                    if store_final != 0 and c_end == nct:
                        for c, kk in T.Parallel(DV, D):
                            ht[n, hv, kk, c0 + c] = S[c, kk]

                else:
                    # ------- WG1: prep (one chunk ahead of WG0): gate factors, WY products, P~ -------
                    # g and beta are read only here: loaded one chunk ahead into registers.
                    Lb = T.alloc_fragment((C, C), dtype)    # L (ldmatrix)
                    Au = T.alloc_fragment((C, C), dtype)
                    Aw = T.alloc_fragment((C, C), dtype)
                    uacc = T.alloc_fragment((C, DV), acc)
                    wacc = T.alloc_fragment((C, D), acc)
                    pacc = T.alloc_fragment((C, C), acc)
                    cu_f = T.alloc_fragment((C,), acc)      # per-column factors, held in registers
                    cw_f = T.alloc_fragment((C,), acc)
                    cp_f = T.alloc_fragment((C,), acc)
                    rp_f = T.alloc_fragment((C,), acc)      # per-row factors
                    ra_f = T.alloc_fragment((C,), acc)
                    gr_f = T.alloc_fragment((C,), acc)
                    gcol_f = T.alloc_fragment((C,), acc)
                    pre = T.alloc_local((2,), acc)
                    red = T.alloc_local((4,), acc)
                    r = tx - 128
                    if r < C and nch > 0:
                        pre[0] = T.if_then_else(r < T.min(eos - bos - c_begin * C, C), g[bos + c_begin * C + r, hv], 0.0)
                        pre[1] = T.if_then_else(r < T.min(eos - bos - c_begin * C, C),
                                                T.cast(beta[bos + c_begin * C + r, hv], acc), 0.0)

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        si = i % NSTAGE
                        pi = (i // NSTAGE) % 2
                        t0 = bos + (c_begin + i) * C
                        nvalid = T.min(eos - t0, C)
                        T.sync_threads(1, 128)   # this warpgroup's scratch of chunk i-1 is read
                        if r < C:
                            g_s[r] = pre[0]
                            b_s[r] = pre[1]
                            if i + 1 < nch:      # prefetch chunk i+1; consumed next iteration
                                pre[0] = T.if_then_else(r < T.min(eos - t0 - C, C), g[t0 + C + r, hv], 0.0)
                                pre[1] = T.if_then_else(r < T.min(eos - t0 - C, C), T.cast(beta[t0 + C + r, hv], acc), 0.0)
                        T.sync_threads(1, 128)
                        T.barrier_wait(full[si], pi)
                        # gc: chunk-local inclusive cumsum (warp 0), q/k row norms (all threads)
                        if r < 32:
                            red[0] = g_s[2 * r]
                            red[1] = g_s[2 * r] + g_s[2 * r + 1]
                            red[2] = red[1]
                            for d in T.unroll(5):
                                red[3] = T.shfl_up(red[2], 1 << d)
                                red[2] = red[2] + T.if_then_else(r >= (1 << d), red[3], 0.0)
                            gc_s[2 * r] = red[2] - red[1] + red[0]
                            gc_s[2 * r + 1] = red[2]
                        if use_l2norm != 0:
                            red[0] = 0.0
                            red[1] = 0.0
                            for e in T.unroll(64):
                                red[0] = red[0] + T.cast(q_s[si, r // 2, (r % 2) * 64 + e], acc) * T.cast(q_s[si, r // 2, (r % 2) * 64 + e], acc)
                                red[1] = red[1] + T.cast(k_s[si, r // 2, (r % 2) * 64 + e], acc) * T.cast(k_s[si, r // 2, (r % 2) * 64 + e], acc)
                            red[0] = red[0] + T.shfl_xor(red[0], 1)
                            red[1] = red[1] + T.shfl_xor(red[1], 1)
                            if r % 2 == 0:
                                rq_s[r // 2] = T.rsqrt(red[0] + L2NORM_EPS)
                                rk_s[r // 2] = T.rsqrt(red[1] + L2NORM_EPS)
                        else:
                            if r < C:
                                rq_s[r] = 1.0
                                rk_s[r] = 1.0
                        T.sync_threads(1, 128)
                        # Gate ratios G_ts = exp(gc_t - gc_s) (s <= t) factor as a_t * b_s around the
                        # middle token m: a_t = exp(gc_t - gc_m), b_s = exp(gc_m - gc_s). For bf16 the
                        # rows' a_t are not applied at all: this warpgroup hands over u~ = u'/a,
                        # w~ = w'/a and P~ = P diag(a), and the state warpgroup computes v~ = v_new / a
                        # with dec' = dec * a, so the products it forms are unchanged. Exact (no
                        # overflow, v~ < 2.4e17 |v_new|) while the chunk's total decay is below 40;
                        # beyond that a = 1 and G is formed element by element (rare).
                        rank1 = gc_s[C - 1] > -40.0
                        T.barrier_wait(pempty[st], (ph + 1) % 2)
                        if r < C:
                            red[0] = gc_s[r]
                            red[1] = T.if_then_else(rank1, gc_s[C // 2 - 1], red[0])   # gc_m, or gc_t itself
                            red[2] = T.exp2((red[0] - red[1]) * LOG2E)                  # a_t (1 off rank-1)
                            ra_s[r] = red[2]
                            rp_s[r] = red[2] * rq_s[r] * scale
                            if not fold_rows:
                                red[2] = 1.0
                            # per-token factors for the state warpgroup
                            dec_s[st, r] = T.if_then_else(r < nvalid, T.exp2((gc_s[C - 1] - red[0]) * LOG2E) * rk_s[r] * red[2], 0.0)
                            og_s[st, r] = T.exp2(red[0] * LOG2E) * rq_s[r] * scale
                            # columns of u~ (cu), -w~ (cw), P~ (cp)
                            cu_s[r] = T.exp2((red[1] - red[0]) * LOG2E) * b_s[r]
                            cw_s[r] = -(T.exp2(red[1] * LOG2E) * b_s[r] * rk_s[r])
                            if fold_rows:
                                cp_s[r] = rk_s[r]
                            else:
                                cp_s[r] = T.exp2((red[1] - red[0]) * LOG2E) * rk_s[r]
                        if r == 0:
                            egl_s[st, 0] = T.exp2(gc_s[C - 1] * LOG2E)
                        T.sync_threads(1, 128)
                        T.copy(cu_s, cu_f)
                        T.copy(cw_s, cw_f)
                        T.copy(cp_s, cp_f)
                        T.copy(rp_s, rp_f)
                        T.copy(L_s[si, :, :], Lb)
                        if rank1:
                            # L is exactly lower triangular (unit diagonal): no mask needed
                            if fold_rows:
                                for t, s in T.Parallel(C, C):
                                    Au[t, s] = T.cast(Lb[t, s], acc) * cu_f[s]
                            else:
                                T.copy(ra_s, ra_f)
                                for t, s in T.Parallel(C, C):
                                    Au[t, s] = T.cast(Lb[t, s], acc) * ra_f[t] * cu_f[s]
                        else:
                            T.copy(gc_s, gr_f)
                            T.copy(gc_s, gcol_f)
                            for t, s in T.Parallel(C, C):
                                Au[t, s] = T.cast(Lb[t, s], acc) * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * cu_f[s]
                        T.wgmma_gemm(Au, v_s[si, :, :], uacc, clear_accum=True)
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
                        T.wgmma_gemm(Aw, k_s[si, :, :], wacc, clear_accum=True)
                        T.wgmma_gemm(q_s[si, :, :], k_s[si, :, :], pacc, transpose_B=True, clear_accum=True)
                        T.wait_wgmma(2)
                        T.copy(uacc, u_s[st, :, 0:DV])
                        T.wait_wgmma(1)
                        T.copy(wacc, w_s[st, :, :])
                        T.wait_wgmma(0)
                        if rank1:
                            for t, s in T.Parallel(C, C):
                                p_s[st, t, s] = T.if_then_else(s <= t, pacc[t, s] * rp_f[t] * cp_f[s], 0.0)
                        else:
                            for t, s in T.Parallel(C, C):
                                p_s[st, t, s] = T.if_then_else(
                                    s <= t, pacc[t, s] * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * rp_f[t] * cp_f[s], 0.0)
                        T.fence_proxy_async()
                        T.barrier_arrive(pfull[st])
                        T.barrier_arrive(empty[si])

    return fused_fwd


def variants():
    return [(variant_symbol(NAME, dt, bdt), dict(dtype=dt, beta_dtype=bdt)) for dt, bdt in IO_VARIANTS]
