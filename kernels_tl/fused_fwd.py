"""fused_fwd: the gated-delta-rule forward over the chunks of one segment, one CTA per
(segment, value head, half of V).

v14 (`fused_fwd_v14`, `build(v14=True)`; opt-in with FLASHGDN_FUSED_FWD_V14=1 until it is tested and
timed on the device - written 2026-12-08 when no device could be had; docs/perf-notes.md): the
inference kernel on two warpgroups, 256 threads, no setmaxnreg (up to 255 registers each); v13's
prep warpgroup and its -w~ tile are gone:

  ring A (q, k [64,128], gate table [9,64]; 3 deep; read by both warpgroups, refilled by WG2, the
  last reader, as soon as its Q S is done); ring B (v [64,64], Au [64,64]; 2 deep; read by WG0
  alone, which refills the stage under its update GEMM); WG0 also issues both rings' first loads
  WG0 state (S^T [64 V][128 K] fp32 in registers), the recurrence:
                            v~^T = V^T Au^T (SS m64n64k64, issued first: it needs no state)
                                   + ((S^T K^T) diag(f)) Au^T  (RS m64n64k128, the product's
                                   columns scaled by f = cw / cu and rounded in registers, then
                                   RS m64n64k64, same accumulator) - i.e. S^T (-w~)^T with
                                   -w~ = Aw K = Au diag(f) K never formed, and no Aw tile
                            S^T = exp(gc_last) S^T + (v~^T diag(dec)) K    RS m64n128k64
                            hands S^T (chunk start, bf16, under the S^T K^T GEMM) and v~^T (under
                            the update GEMM) to WG2 through two tiles each, by chunk parity (stmatrix)
  WG2 output (threads 128-255; named WG2 since v12):
                            Q K^T (SS m64n64k128, chunk i + 1's issued behind chunk i's P~ v~)
                            -> P~ masked and scaled in registers (the A operand of the next
                            GEMM), o = diag(og) Q S + P~ v~ (SS m64n64k128, RS m64n64k64),
                            o [t][c] -> stmatrix -> TMA store
  Barriers: fullA/emptyA (both release), fullB, and sfull/sempty, vfull/vempty (WG0 <-> WG2), one
  pair per buffer; their hand model is build_tools/fused_fwd3_protocol.py. 195328 + 1024 bytes of
  shared memory, 204 registers, no spills.
  What it removes from v13 (below): WG0's ~670-cycle wait a chunk for WG1's -w~ (WG1 itself
  waited for ring A, which WG2 refills 1.5 chunks behind WG0), a GEMM of 1 MF a chunk run in both
  V halves' CTAs, the -w~ and Aw tiles (~48 KB of shared-memory traffic a chunk, 8 KB of TMA).

v13 (`fused_fwd3`, `build(three_wg=True)`; the library's inference kernel, FLASHGDN_FUSED_FWD_3WG=0
selects v11): the inference kernel (o and the final state) on three warpgroups, 384 threads,
setmaxnreg 224 / 128 / 152 (the CTA's pool: 3 x 168):

  ring A (q, k [64,128], gate table [9,64]; 3 deep; read by all three warpgroups, refilled by
  WG2, the last reader, as soon as its Q S is done); ring B (v [64,64], Au, Aw [64,64]; 2 deep;
  Aw read by WG1, v and Au by WG0, which refills the stage under its v~ GEMM)
  WG1 prep, a chunk ahead:  -w~ = Aw K (m64n128k64, SS) -> w_s (one buffer, released by uempty)
  WG0 state (S^T [64 V][128 K] fp32 in registers), the recurrence:
                            v~^T = V^T Au^T (SS m64n64k64, issued before the wait for -w~: it
                                   needs no state) + S^T (-w~)^T (RS m64n64k128, same accumulator)
                            S^T = exp(gc_last) S^T + (v~^T diag(dec)) K    RS m64n128k64
                            hands S^T (chunk start, bf16, under the v~ GEMM) and v~^T (under the
                            update GEMM) to WG2 through two tiles each, by chunk parity (stmatrix)
  WG2 output:               Q K^T (SS m64n64k128) -> P~ masked and scaled in registers (the A
                            operand of the next GEMM), o = diag(og) Q S + P~ v~ (SS m64n64k128,
                            RS m64n64k64), o [t][c] -> stmatrix -> TMA store
  Barriers: fullA/emptyA (all three release), fullB/emptyB (WG1 releases), pfull/uempty (WG1 <->
  WG0), and sfull/sempty, vfull/vempty (WG0 <-> WG2), one pair per buffer; their hand model is
  build_tools/fused_fwd3_protocol.py. 228096 + 1024 bytes of shared memory, no spills.
  v12 (2026-12-07) had WG1 form u~ = Au V too and hand it to WG0 in fp32 through shared memory
  (16 KB written, 16 KB read a chunk: 16 STS.64 a thread in WG1, 32 LDS in WG0), one S^T and
  one v~^T tile, ring B refilled by WG1 and ring A by WG2 after its o store: all three
  warpgroups ran at ~3.4k cycles a chunk, WG0 waiting on sempty for WG2's previous Q S (H100
  timeline). Until v11 the o work sat on WG0 and Q K^T / P~ on WG1, and both
  warpgroups' chains were ~3.9k cycles a chunk (docs/perf-notes.md).

Every other variant - v11 (the inference kernel before v12), the backward's state pass, the state
pass with o, cp_summary - uses the two-warpgroup layout below.

Grid (2 * segments, HV); 256 threads = 2 warpgroups (both can hold up to 255 registers, which
ptxas needs to pipeline wgmma: with 3 warpgroups and no setmaxnreg it caps threads at 168 and serialises every
wgmma, C7512). Per chunk c (64 tokens):

  inputs by TMA, issued by WG1 in two rings: A = q, k (3 deep; chunk c+2 refills once WG0 is
  done with chunk c-1), B = v, Au, Aw, gate vectors (2 deep, WG1 its only reader):
      q, k [64,128] (the q/k head of the GVA group), v [64,64] (this CTA's half of V),
      Au, Aw [64,64] (chunk_prep's gated WY factors (G * L) diag(cu), (G * L) diag(cw), kept
      in the gate-vector table's last rows, read through the input-dtype view `wy`), gate
      vectors [9,64] (chunk_prep's table: every per-token factor below, so this kernel never
      reads g or beta)

  WG1 prep, one chunk ahead of WG0 (tensor cores, async wgmma, three GEMMs in flight):
      u~  = Au V                               wgmma SS m64n64k64   -> smem [t][c] (padded, fp32)
      -w~ = Aw K                               wgmma SS m64n128k64  -> smem [t][k]
      P~ = (Q K^T)[s<=t] diag(rp) . diag(cp)   wgmma SS m64n64k128  -> smem [t][s]
      (G_ts = exp(gc_t - gc_s) = a_t b_s: b_s sits in cu, cw, cp; for bf16 the row factor a_t
      is not applied at all - the state warpgroup works with v~ = v_new / a_t - and for fp16 it
      is applied to the rows of Au, Aw and P. Chunks decaying by more than 80 form G per
      element. Until 2026-11-23 this warpgroup formed Au, Aw itself from L: 1/3 of its
      instructions, on the critical path - docs/perf-notes.md.)
      u~ has one buffer: WG1 writes chunk c's once WG0 has read chunk c-1's (uempty).

  WG0 state (holds S^T [64 V cols x 128 K] fp32 in registers) - the recurrence:
      v~^T = u~^T + S^T (-w~)^T                    wgmma RS m64n64k128 (A = S^T, registers)
      S^T  = exp(gc_last) S^T + (v~^T diag(dec')) K           wgmma RS m64n128k64  \\ three GEMMs
      o^T  = diag(og) (S_old^T Q^T) + v~^T P~^T      wgmma RS m64n64k128, m64n64k64 / back to back
      o -> smem (stmatrix.trans from a fragment laid out as the accumulator's transpose) -> TMA
      store (waited for one chunk later); masked stores for a partial chunk.

The recurrence is WG0's two dependent GEMMs; everything that does not depend on the state runs
one chunk ahead on WG1. The two are now about balanced (ncu at (1,8k,16,64): WG1 ~690
instructions a chunk and warp, WG0 ~560; each waits on the other 15-22% of its time), so a chunk
costs more than either's own work. In-kernel L2 norm of q/k is folded into the factors.
Barriers: fullA/emptyA (q, k ring), fullB/emptyB (v, Au, Aw, gate-table ring), pfull/pempty (prep ->
state), uempty (u~ read).
A CP segment starts at its first chunk from seg_states (exact_cp: cp_summary + cp_combine made
it) when it cannot warm up; the look-back test is the same in all three kernels.

Variants fused_fwd_states (states=True, outputs=False) and fused_fwd_o_states (states=True): the
backward's state pass, storing S^T in the input dtype at every chunk's start into hsT. The
states-only one - what the backward runs - has no q, P~ or o (WG0: the v~ and update GEMMs only,
as cp_summary) and, with that shared memory free, stages each state through a 16 KB tile
(stmatrix) and stores it by TMA under the v~ GEMM; the one that also forms o stores it from
registers (its shared memory is full).

Variant cp_summary (summary=True), pass 1 of that correction (docs/context-parallelism.md): for
every segment whose successor cannot warm up, its affine summary S_out = F + M S_in - F from a
zero state at its first chunk, M the product of its chunk transitions T_c = exp(gc_last) I -
Kd^T w, i.e. this state loop run on the identity with u = 0. Grid (4 * segments, HV): bx % 4 =
0, 1 the V halves of F, 2, 3 the K halves of M; no q, no P~, no outputs (WG0: the v~ and update
GEMMs only). A segment whose own start can warm up, or a sequence's first, is a cut (F is its
true outgoing state, M unused). S^T goes to summ[seg, hv, :, block], the kind to kinds[seg, hv].
"""

import tilelang
import tilelang.language as T

from common import CHUNK, HEAD_DIM, KIND_CUT, KIND_RELATIVE, acc_transposed_layout, aw_over_au, cp_warmup_chunks, locate_item, pdl_wait, ring_barriers, variant_symbol
from common import GV_ROWS, GV_FWD_ROWS, GV_WY_AU, GV_WY_AW, GV_DEC, GV_OG, GV_CU, GV_CW, GV_CP, GV_RP, GV_GC, GV_MISC

NAME = "fused_fwd"
DTYPES = ("bfloat16", "float16")
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: True}
LOG2E = 1.4426950408889634
NA = 3         # ring A depth (q, k; in fused_fwd3 also the gate rows)
NB = 2         # ring B depth (v, Au, Aw; in the two-warpgroup kernels also the gate rows)
REG_STATE, REG_PREP, REG_OUT = 224, 128, 152   # setmaxnreg of the inference kernel's warpgroups (sum <= 3 x 168)
OUT_BARRIER_ID = 7   # named barrier of WG2's o tile (TileLang's partial syncs take lower ids)
# setmaxnreg moves registers inside the CTA's pool of 3 x 168 (384 threads at launch): an increase
# the pool cannot cover waits forever, so a bad edit here would hang the GPU, not fail a build.
# PTX also wants each count a multiple of 8 in [24, 256].
assert REG_STATE + REG_PREP + REG_OUT <= 3 * 168, "setmaxnreg counts exceed the CTA's register pool"
assert all(24 <= r <= 256 and r % 8 == 0 for r in (REG_STATE, REG_PREP, REG_OUT))


@T.macro
def _stamp(ht, bx, hv, i, point, t_start):
    if bx == 0 and hv == 0 and i < 64:
        ht[0, 0, i, point] = T.cast(T.call_extern("int64", "clock64") - t_start[0], "float32")


@T.macro
def _locate_segment(seg, seq_len, num_seqs, seg_chunks, cu_seqlens, chunk_offsets, seg_offsets, loc):
    """The segment's sequence and chunk range (every variant): n (-1 past the grid's last item),
    bos, eos, its chunk count nct, the first chunk c_out whose outputs it writes, c_end, and the
    sequence's first gate-table row chunk_base. loc: int32 local [6]."""
    locate_item(seg, seg_chunks, 1, seq_len, num_seqs, cu_seqlens, seg_offsets, loc, 21)
    n = loc[0]
    bos = loc[1]
    eos = loc[2]
    nct = T.ceildiv(eos - bos, CHUNK)
    c_out = loc[3] * seg_chunks                 # first chunk whose outputs this CTA writes
    c_end = T.min(c_out + seg_chunks, nct)
    chunk_base = T.if_then_else(seq_len > 0, n * nct, chunk_offsets[T.max(n, 0)])
    return n, bos, eos, nct, c_out, c_end, chunk_base


@T.macro
def _forward_first_chunk(stats, chunk_base, hv, n, c_out, cp_log_tol, exact_cp, tx, wu_s, wres, wv, ix):
    """ix[3] = the first chunk a forward pass runs: c_out - w when the look-back proves a warm-up
    of w chunks enough, c_out with the exact CP correction's seed, else the sequence's first."""
    if n >= 0 and c_out > 0:
        cp_warmup_chunks(stats, chunk_base, hv, c_out - 1, -1, c_out, cp_log_tol, tx, wu_s, wres, wv)
    ix[3] = 0
    if n >= 0 and c_out > 0:
        ix[3] = T.if_then_else(wres[0] > 0, c_out - wres[0], T.if_then_else(exact_cp != 0, c_out, 0))


@T.macro
def _hoist_indices(ix, hk, chunk_base, c_begin, bos):
    """The q/k head, the gate-table row of chunk c_begin and its first token, held in registers
    once: TMA coordinates computed from them inline would redo the integer divisions for every
    load (~1000 cycles a refill). Uses ix[0:3]."""
    ix[0] = hk
    ix[1] = chunk_base + c_begin
    ix[2] = bos + c_begin * CHUNK
    return ix[0], ix[1], ix[2]


def build(dtype: str, states: bool = False, outputs: bool = True, summary: bool = False, timeline: bool = False,
          three_wg: bool = False, v14: bool = False):
    """One kernel per input dtype (beta is folded into chunk_prep's gate vectors, so its dtype
    does not matter here). states=True: the backward's state pass, which stores the state at
    every chunk's start into hsT (when store_states != 0); with outputs=False
    (`fused_fwd_states`) it forms no o at all. The inference kernel carries no code for states:
    never-executed stores in the state loop cost the forward 3-8% (instruction fetch and a
    different register plan; docs/perf-notes.md).

    summary=True: `cp_summary`, pass 1 of the exact CP correction (see the header): the state
    loop without q, P~ or outputs, on four column blocks [F | M] per segment and value head.

    timeline=True (debug builds only, never shipped): CTA 0 of head 0 writes clock64() offsets
    at its phase boundaries into ht[0, 0, chunk, point] (run with store_final = 0; see
    benchmarks/timeline.py).

    three_wg=True: the three-warpgroup inference kernel (v13, header), `fused_fwd3`.
    v14=True: the two-warpgroup inference kernel v14 (header), `fused_fwd_v14` (opt-in until it
    is measured on the device: FLASHGDN_FUSED_FWD_V14=1); with summary=True its cp_summary
    (`cp_summary_v14`: v14's state loop on one warpgroup, no Aw tile), with states=True,
    outputs=False the backward's state pass (`fused_fwd_states_v14`, the same loop)."""
    assert not three_wg or (outputs and not states and not summary), "three_wg: the inference kernel only"
    assert not v14 or (outputs and not states) or (summary and not states) or (states and not outputs), \
        "v14: the inference kernel, cp_summary or the states-only pass"
    assert not (three_wg and v14), "three_wg and v14 are two different kernels"
    Ttot = T.dynamic("Ttot")
    H = T.dynamic("H")
    HV = T.dynamic("HV")
    NS1 = T.dynamic("NS1")     # sequences + 1
    NST = T.dynamic("NST")     # rows of h0 / ht (sequences, or 1 when unused)
    NCG = T.dynamic("NCG")     # rows of the gate-vector table (chunks)
    NCS = T.dynamic("NCS")     # rows of hsT (chunks with store_states, else 1)
    NSEG = T.dynamic("NSEG")   # rows of seg_states (CP items with exact_cp, else 1) / of summ, kinds
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2         # V columns per CTA
    acc = "float32"
    outs = outputs and not summary   # o is formed: q, P~ and the output GEMMs exist
    staged_states = states and not outs   # states leave through shared memory + TMA (room: no q, P~, o)

    @T.macro
    def state_pass(q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets, o, ht, hsT, seg_states,
                   summ, kinds, seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final, store_states,
                   cp_log_tol, exact_cp):
        with T.Kernel((4 if summary else 2) * num_segs, HV, threads=256) as (bx, hv):
            pdl_wait()
            vh = bx % 2
            if summary:
                is_m = (bx // 2) % 2      # 1: a K half of M (identity start, u = 0)
                seg = bx // 4
            else:
                seg = bx // 2
            tx = T.get_thread_binding()
            t_start = T.alloc_local((1,), "int64")
            if timeline:
                t_start[0] = T.call_extern("int64", "clock64")
            loc = T.alloc_local((6,), "int32")
            n, bos, eos, nct, c_out, c_end, chunk_base = _locate_segment(seg, seq_len, num_seqs, seg_chunks,
                                                                         cu_seqlens, chunk_offsets, seg_offsets, loc)
            hk = hv // (HV // H)
            c0 = vh * DV

            # ---- where the pass starts (intra-card context parallelism) -------------------
            # A segment after the first needs the state at c_out. If, over the w chunks before
            # it, sum(g) <= ln(tol) and beta |k|^2 <= 2 for every token (so every factor
            # exp(g)(I - beta k k^T) has norm <= exp(g)), then the state at c_out - w reaches c_out
            # shrunk by at least tol: start there from zero (warm-up, no outputs). The smallest
            # such w <= 64 comes from chunk_prep's per-chunk stats; without one, start at c_out
            # with the true incoming state from cp_summary + cp_combine (exact_cp, tool (a)), or
            # else at the sequence's first chunk with the true initial state (exact, just longer).
            wu_s = T.alloc_shared((2, 64), acc)
            wres = T.alloc_shared((1,), "int32")
            wv = T.alloc_local((8,), acc)
            if summary:
                # needed only when the next segment cannot warm up (the test the main pass and
                # cp_combine make at its start, on the same stats)
                ix = T.alloc_local((6,), "int32")
                ix[4] = 0                                 # 1: this CTA runs
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
                    ix[4] = 0                             # a cut's M is never read
            else:
                ix = T.alloc_local((4,), "int32")
                _forward_first_chunk(stats, chunk_base, hv, n, c_out, cp_log_tol, exact_cp, tx, wu_s, wres, wv, ix)
            c_begin = ix[3]                               # first chunk this CTA runs
            nch = T.max(c_end - c_begin, 0)
            hk, gch0, tok0 = _hoist_indices(ix, hk, chunk_base, c_begin, bos)

            # inputs by TMA, two rings: A = q, k (read by both warpgroups, NA deep); B = v, L and the
            # gate table (read by prep only, NB deep). Prep outputs: double-buffered.
            if outs:
                q_s = T.alloc_shared((NA, C, D), dtype)
            k_s = T.alloc_shared((NA, C, D), dtype)
            v_s = T.alloc_shared((NB, C, DV), dtype)
            au_s = T.alloc_shared((NB, C, C), dtype)    # chunk_prep's gated WY factors Au, Aw
            aw_s = T.alloc_shared((NB, C, C), dtype)
            tab_s = T.alloc_shared((NB, GV_FWD_ROWS, C), acc)   # the forward's rows only
            # u~ stays fp32: v~ = u~ - w~ S can cancel, and a bf16 u~ would cost ~20% of the state's
            # accuracy; rows padded so the [t][c] writes and the (c, t) reads are conflict-free.
            # One buffer (shared memory is full): prep writes chunk i's once the state warpgroup
            # has read chunk i - 1's (uempty), which it does first thing in its chunk.
            u_s = T.alloc_shared((C, DV + 4), acc)
            w_s = T.alloc_shared((2, C, D), dtype)      # -w~   [t][k]
            if outs:
                p_s = T.alloc_shared((2, C, C), dtype)  # P~    [t][s]
            dec_s = T.alloc_shared((2, C), acc)         # the gate-table rows the state needs
            if outs:
                og_s = T.alloc_shared((2, C), acc)
            egl_s = T.alloc_shared((2, 1), acc)
            if outs:
                o_s = T.alloc_shared((C, DV), dtype)
            if staged_states:
                hs_s = T.alloc_shared((DV, D), dtype)   # S^T of the chunk start, on its way to hsT
            fullA, emptyA, fullB, emptyB, pfull, pempty = ring_barriers(NA, NB)
            uempty = T.alloc_barrier(arrive_count=[128])
            if summary:
                runs = ix[4] != 0
            else:
                runs = n >= 0

            if runs:
                if tx < 128:
                    # ------------- WG0: state; also refills the input stages by TMA -------------
                    S = T.alloc_fragment((DV, D), acc)          # S^T [c][k]
                    S_bf = T.alloc_fragment((DV, D), dtype)
                    vacc = T.alloc_fragment((DV, C), acc)       # v~^T [c][t]
                    ut = T.alloc_fragment((DV, C), acc)         # u~^T as loaded
                    if outs:
                        vn_bf = T.alloc_fragment((DV, C), dtype)
                    vnd_bf = T.alloc_fragment((DV, C), dtype)
                    if outs:
                        oacc = T.alloc_fragment((DV, C), acc)   # o^T [c][t]: S Q^T part
                        oacc2 = T.alloc_fragment((DV, C), acc)  # o^T: P~ v~ part
                        o_bf = T.alloc_fragment((C, DV), dtype)   # o [t][c], for the store
                        T.annotate_layout({o_bf: acc_transposed_layout(C, DV)})
                    dec_f = T.alloc_fragment((C,), acc)
                    if outs:
                        og_f = T.alloc_fragment((C,), acc)
                    egl = T.alloc_local((1,), acc)

                    if summary and is_m != 0:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = T.if_then_else(kk == c0 + c, 1.0, 0.0)
                    elif has_h0 != 0 and c_begin == 0:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = h0[n, hv, kk, c0 + c]
                    elif not summary and exact_cp != 0 and c_out > 0 and c_begin == c_out:
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = seg_states[seg, hv, kk, c0 + c]
                    else:
                        T.clear(S)

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        sa = i % NA
                        pa = (i // NA) % 2
                        if outs:
                            t0 = tok0 + i * C
                            nvalid = T.min(eos - t0, C)
                        if timeline:
                            if tx == 0:
                                _stamp(ht, bx, hv, i, 0, t_start)
                        T.copy(S, S_bf)
                        if states and not staged_states and store_states != 0 and c_begin + i >= c_out:
                            # for the backward: the state at this chunk's start (its own chunks
                            # only), as the GEMMs here use it - in the input dtype
                            for c, kk in T.Parallel(DV, D):
                                hsT[gch0 + i, hv, c0 + c, kk] = S_bf[c, kk]
                        T.barrier_wait(pfull[st], ph)
                        T.barrier_wait(fullA[sa], pa)
                        if timeline:
                            if tx == 0:
                                _stamp(ht, bx, hv, i, 1, t_start)
                        # v~^T = S^T (-w~)^T + u~^T: the GEMM starts from zero so that the u~ loads
                        # (and the factor loads) overlap it instead of preceding it
                        T.wgmma_gemm(S_bf, w_s[st, :, :], vacc, transpose_B=True, clear_accum=True)
                        if staged_states:
                            # for the backward: the state at this chunk's start (its own chunks
                            # only), in the input dtype as the GEMMs here use it; through shared
                            # memory and a TMA store, under the v~ GEMM (both only read S_bf).
                            # The previous chunk's store must have left hs_s first.
                            if store_states != 0 and c_begin + i >= c_out:
                                T.tma_store_wait()
                                T.sync_threads(5, 128)
                                T.copy(S_bf, hs_s)
                                T.tma_copy(hs_s, hsT[gch0 + i, hv, c0:c0 + DV, 0:D])
                        for c, t in T.Parallel(DV, C):
                            ut[c, t] = u_s[t, c]
                        T.copy(dec_s[st, :], dec_f)
                        if outs:
                            T.copy(og_s[st, :], og_f)
                        egl[0] = egl_s[st, 0]
                        T.wait_wgmma(0)
                        for c, t in T.Parallel(DV, C):
                            vacc[c, t] = vacc[c, t] + ut[c, t]
                        T.barrier_arrive(uempty[0])
                        if timeline:
                            if tx == 0:
                                _stamp(ht, bx, hv, i, 2, t_start)
                        for c, t in T.Parallel(DV, C):
                            vnd_bf[c, t] = vacc[c, t] * dec_f[t]
                        if outs:
                            for c, t in T.Parallel(DV, C):
                                vn_bf[c, t] = vacc[c, t]
                        for c, kk in T.Parallel(DV, D):
                            S[c, kk] = S[c, kk] * egl[0]
                        # three GEMMs back to back on the tensor cores; one wait
                        T.wgmma_gemm(vnd_bf, k_s[sa, :, :], S)
                        if outs:
                            T.wgmma_gemm(S_bf, q_s[sa, :, :], oacc, transpose_B=True, clear_accum=True)
                            T.wgmma_gemm(vn_bf, p_s[st, :, :], oacc2, transpose_B=True, clear_accum=True)
                        T.wait_wgmma(0)
                        if timeline:
                            if tx == 0:
                                _stamp(ht, bx, hv, i, 3, t_start)
                        T.barrier_arrive(emptyA[sa])
                        T.barrier_arrive(pempty[st])
                        if outs:
                            for c, t in T.Parallel(DV, C):
                                oacc[c, t] = oacc[c, t] * og_f[t] + oacc2[c, t]
                            if timeline:
                                if tx == 0:
                                    _stamp(ht, bx, hv, i, 5, t_start)
                            if c_begin + i < c_out:
                                pass                         # warm-up chunk: no outputs
                            elif nvalid == C:
                                # The previous chunk's tile must have left o_s: the thread that issued
                                # its TMA store waits, then the warpgroup meets it at a named barrier
                                # (id 5: TileLang's own partial syncs here use 3 and 4).
                                T.tma_store_wait()
                                T.sync_threads(5, 128)
                                if timeline:
                                    if tx == 0:
                                        _stamp(ht, bx, hv, i, 6, t_start)
                                # o^T's fragment transposed into o [t][c] in registers, then
                                # stmatrix.trans into the tile (was 32 scalar 2-byte stores)
                                for t, c in T.Parallel(C, DV):
                                    o_bf[t, c] = oacc[c, t]
                                T.copy(o_bf, o_s)
                                T.tma_copy(o_s, o[t0:t0 + C, hv, c0:c0 + DV])
                            else:
                                for c, t in T.Parallel(DV, C):
                                    if t < nvalid:
                                        o[t0 + t, hv, c0 + c] = oacc[c, t]
                            if timeline:
                                if tx == 0:
                                    _stamp(ht, bx, hv, i, 4, t_start)

                    if summary:
                        for c, kk in T.Parallel(DV, D):
                            summ[seg, hv, kk, is_m * D + c0 + c] = S[c, kk]
                        if tx == 0 and bx % 4 == 0:
                            kinds[seg, hv] = ix[5]
                    else:
                        T.tma_store_wait()
                        if store_final != 0 and c_end == nct:
                            for c, kk in T.Parallel(DV, D):
                                ht[n, hv, kk, c0 + c] = S[c, kk]

                else:
                    # ------- WG1: prep (one chunk ahead of WG0): WY products u~, -w~ and P~ -------
                    uacc = T.alloc_fragment((C, DV), acc)
                    wacc = T.alloc_fragment((C, D), acc)
                    if outs:
                        pacc = T.alloc_fragment((C, C), acc)
                        cp_f = T.alloc_fragment((C,), acc)  # P~'s column and row factors
                        rp_f = T.alloc_fragment((C,), acc)
                        gr_f = T.alloc_fragment((C,), acc)  # gc by row / column (chunks past rank-1)
                        gcol_f = T.alloc_fragment((C,), acc)

                    for j in T.serial(T.min(nch, 2)):
                        if outs:
                            T.tma_copy(q[tok0 + j * C:tok0 + j * C + C, hk, 0:D], q_s[j, :, :], barrier=fullA[j])
                        T.tma_copy(k[tok0 + j * C:tok0 + j * C + C, hk, 0:D], k_s[j, :, :], barrier=fullA[j])
                        T.barrier_arrive(fullA[j])
                        T.tma_copy(v[tok0 + j * C:tok0 + j * C + C, hv, c0:c0 + DV], v_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(wy[gch0 + j, hv, 2 * GV_WY_AU:2 * GV_WY_AU + C, 0:C], au_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(wy[gch0 + j, hv, 2 * GV_WY_AW:2 * GV_WY_AW + C, 0:C], aw_s[j, :, :], barrier=fullB[j])
                        T.tma_copy(gvec[gch0 + j, hv, 0:GV_FWD_ROWS, 0:C], tab_s[j, :, :], barrier=fullB[j])
                        T.barrier_arrive(fullB[j])

                    for i in T.serial(nch):
                        st = i % 2
                        ph = (i // 2) % 2
                        sa = i % NA
                        pa = (i // NA) % 2
                        sb = i % NB
                        pb = (i // NB) % 2
                        if timeline:
                            if tx == 128:
                                _stamp(ht, bx, hv, i, 16, t_start)
                        T.barrier_wait(fullB[sb], pb)
                        T.barrier_wait(fullA[sa], pa)
                        if outs:
                            rank1 = tab_s[sb, GV_MISC, 1] > 0.5
                            if not rank1:
                                T.copy(tab_s[sb, GV_GC, :], gr_f)
                                T.copy(tab_s[sb, GV_GC, :], gcol_f)
                        if timeline:
                            if tx == 128:
                                _stamp(ht, bx, hv, i, 17, t_start)
                        T.barrier_wait(pempty[st], (ph + 1) % 2)
                        # u~ = Au V, -w~ = Aw K straight from chunk_prep's tiles (shared memory)
                        T.wgmma_gemm(au_s[sb, :, :], v_s[sb, :, :], uacc, clear_accum=True)
                        T.wgmma_gemm(aw_s[sb, :, :], k_s[sa, :, :], wacc, clear_accum=True)
                        if outs:
                            T.wgmma_gemm(q_s[sa, :, :], k_s[sa, :, :], pacc, transpose_B=True, clear_accum=True)
                            T.copy(tab_s[sb, GV_CP, :], cp_f)
                            T.copy(tab_s[sb, GV_RP, :], rp_f)
                        if timeline:
                            if tx == 128:
                                _stamp(ht, bx, hv, i, 18, t_start)
                        T.wait_wgmma(2 if outs else 1)
                        if summary:
                            if is_m != 0:
                                T.clear(uacc)               # M's blocks: u = 0 (T_c acts on S as the update does with v = 0)
                        if i >= 1:
                            T.barrier_wait(uempty[0], (i - 1) % 2)
                        T.copy(uacc, u_s[:, 0:DV])
                        T.wait_wgmma(1 if outs else 0)
                        T.copy(wacc, w_s[st, :, :])
                        if outs:
                            T.wait_wgmma(0)
                        if timeline:
                            if tx == 128:
                                _stamp(ht, bx, hv, i, 19, t_start)
                        if outs:
                            if rank1:
                                for t, s in T.Parallel(C, C):
                                    p_s[st, t, s] = T.if_then_else(s <= t, pacc[t, s] * rp_f[t] * cp_f[s], 0.0)
                            else:
                                for t, s in T.Parallel(C, C):
                                    p_s[st, t, s] = T.if_then_else(
                                        s <= t, pacc[t, s] * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * rp_f[t] * cp_f[s], 0.0)
                        # the gate-table rows the state warpgroup needs travel with the prep outputs
                        if tx - 128 < C:
                            dec_s[st, tx - 128] = tab_s[sb, GV_DEC, tx - 128]
                            if outs:
                                og_s[st, tx - 128] = tab_s[sb, GV_OG, tx - 128]
                        if tx == 128:
                            egl_s[st, 0] = tab_s[sb, GV_MISC, 0]
                        T.fence_proxy_async()
                        T.barrier_arrive(pfull[st])
                        T.barrier_arrive(emptyA[sa])
                        T.barrier_arrive(emptyB[sb])
                        # Refills. Ring B (prep's own): chunk i+2 into this stage once all of this
                        # warpgroup has arrived (it is the only reader). Ring A: chunk i+2 into the
                        # stage chunk i-1 used, once the state warpgroup has released it too (this
                        # warpgroup runs a chunk or more ahead, so the wait is short).
                        if i + 2 < nch:
                            T.barrier_wait(emptyB[sb], pb)
                            T.tma_copy(v[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hv, c0:c0 + DV], v_s[sb, :, :], barrier=fullB[sb])
                            T.tma_copy(wy[gch0 + i + 2, hv, 2 * GV_WY_AU:2 * GV_WY_AU + C, 0:C], au_s[sb, :, :], barrier=fullB[sb])
                            T.tma_copy(wy[gch0 + i + 2, hv, 2 * GV_WY_AW:2 * GV_WY_AW + C, 0:C], aw_s[sb, :, :], barrier=fullB[sb])
                            T.tma_copy(gvec[gch0 + i + 2, hv, 0:GV_FWD_ROWS, 0:C], tab_s[sb, :, :], barrier=fullB[sb])
                            T.barrier_arrive(fullB[sb])
                            if i >= 1:
                                T.barrier_wait(emptyA[(i + 2) % NA], ((i - 1) // NA) % 2)
                            if outs:
                                T.tma_copy(q[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hk, 0:D], q_s[(i + 2) % NA, :, :], barrier=fullA[(i + 2) % NA])
                            T.tma_copy(k[tok0 + (i + 2) * C:tok0 + (i + 2) * C + C, hk, 0:D], k_s[(i + 2) % NA, :, :], barrier=fullA[(i + 2) % NA])
                            T.barrier_arrive(fullA[(i + 2) % NA])
                        if timeline:
                            if tx == 128:
                                _stamp(ht, bx, hv, i, 20, t_start)

    if summary:
        @T.prim_func
        def cp_summary(
            k: T.Tensor((Ttot, H, D), dtype),
            v: T.Tensor((Ttot, HV, D), dtype),
            wy: T.Tensor((NCG, HV, 2 * GV_ROWS, C), dtype),      # gvec's memory, in the input dtype
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
            if v14:
                _state_pass_v14(dtype, True, H, HV, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets,
                                seg_offsets, None, None, None, summ, kinds, seq_len, num_seqs, seg_chunks, num_segs,
                                has_h0, None, None, cp_log_tol, None)
            else:
                state_pass(None, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets, None, None, None,
                           None, summ, kinds, seq_len, num_seqs, seg_chunks, num_segs, has_h0, None, None, cp_log_tol,
                           None)

        return cp_summary

    @T.prim_func
    def fused_fwd(
        q: T.Tensor((Ttot, H, D), dtype),
        k: T.Tensor((Ttot, H, D), dtype),
        v: T.Tensor((Ttot, HV, D), dtype),
        wy: T.Tensor((NCG, HV, 2 * GV_ROWS, C), dtype),      # gvec's memory, in the input dtype
        gvec: T.Tensor((NCG, HV, GV_ROWS, C), "float32"),
        stats: T.Tensor((NCG, HV, 2), "float32"),
        h0: T.Tensor((NST, HV, D, D), "float32"),
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        o: T.Tensor((Ttot, HV, D), dtype),
        ht: T.Tensor((NST, HV, D, D), "float32"),
        hsT: T.Tensor((NCS, HV, D, D), dtype),
        seg_states: T.Tensor((NSEG, HV, D, D), "float32"),
        seq_len: T.int32,
        num_seqs: T.int32,
        seg_chunks: T.int32,
        num_segs: T.int32,
        has_h0: T.int32,
        store_final: T.int32,
        store_states: T.int32,
        cp_log_tol: T.float32,
        exact_cp: T.int32,
    ):
        # x = 2 * segment + V half (the two halves of a head run side by side and share q/k/L
        # in L2); y = value head. Segments go on x because grid y/z stop at 65535.
        if v14 and states:
            _state_pass_v14(dtype, False, H, HV, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets,
                            ht, hsT, seg_states, None, None, seq_len, num_seqs, seg_chunks, num_segs, has_h0,
                            store_final, store_states, cp_log_tol, exact_cp)
        elif v14:
            _inference_pass_v14(dtype, timeline, H, HV, q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets,
                                seg_offsets, o, ht, seg_states, seq_len, num_seqs, seg_chunks, num_segs, has_h0,
                                store_final, cp_log_tol, exact_cp)
        elif three_wg:
            _inference_pass(dtype, timeline, H, HV, q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets,
                            seg_offsets, o, ht, seg_states, seq_len, num_seqs, seg_chunks, num_segs, has_h0,
                            store_final, cp_log_tol, exact_cp)
        else:
            state_pass(q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets, o, ht, hsT, seg_states,
                       None, None, seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final, store_states,
                       cp_log_tol, exact_cp)

    return fused_fwd


@T.macro
def _load_ring_a(q, k, gvec, q_s, k_s, tab_s, full, stage, j, tok0, gch0, hk, hv):
    """Three-warpgroup pass: chunk j's q, k and gate-table rows into ring A's stage (TMA), then
    the issuing warpgroup's arrival on the stage's full barrier."""
    T.tma_copy(q[tok0 + j * CHUNK:tok0 + j * CHUNK + CHUNK, hk, 0:HEAD_DIM], q_s[stage, :, :], barrier=full[stage])
    T.tma_copy(k[tok0 + j * CHUNK:tok0 + j * CHUNK + CHUNK, hk, 0:HEAD_DIM], k_s[stage, :, :], barrier=full[stage])
    T.tma_copy(gvec[gch0 + j, hv, 0:GV_FWD_ROWS, 0:CHUNK], tab_s[stage, :, :], barrier=full[stage])
    T.barrier_arrive(full[stage])


@T.macro
def _load_ring_b(v, wy, v_s, au_s, aw_s, full, stage, j, tok0, gch0, hv, c0):
    """Three-warpgroup pass: chunk j's v (this CTA's V half) and gated WY tiles Au, Aw into ring
    B's stage (TMA), then the issuing warpgroup's arrival."""
    DV = HEAD_DIM // 2
    T.tma_copy(v[tok0 + j * CHUNK:tok0 + j * CHUNK + CHUNK, hv, c0:c0 + DV], v_s[stage, :, :], barrier=full[stage])
    T.tma_copy(wy[gch0 + j, hv, 2 * GV_WY_AU:2 * GV_WY_AU + CHUNK, 0:CHUNK], au_s[stage, :, :], barrier=full[stage])
    T.tma_copy(wy[gch0 + j, hv, 2 * GV_WY_AW:2 * GV_WY_AW + CHUNK, 0:CHUNK], aw_s[stage, :, :], barrier=full[stage])
    T.barrier_arrive(full[stage])


@T.macro
def _load_ring_b_au(v, wy, v_s, au_s, full, stage, j, tok0, gch0, hv, c0):
    """Inference pass (fused_fwd3): chunk j's v (this CTA's V half) and gated WY tile Au into ring
    B's stage (TMA), then the issuing warpgroup's arrival."""
    DV = HEAD_DIM // 2
    T.tma_copy(v[tok0 + j * CHUNK:tok0 + j * CHUNK + CHUNK, hv, c0:c0 + DV], v_s[stage, :, :], barrier=full[stage])
    T.tma_copy(wy[gch0 + j, hv, 2 * GV_WY_AU:2 * GV_WY_AU + CHUNK, 0:CHUNK], au_s[stage, :, :], barrier=full[stage])
    T.barrier_arrive(full[stage])


@T.macro
def _hand_off(frag, tile0, tile1, full, empty, i):
    """Three-warpgroup pass: WG0 hands chunk i's fragment (S^T or v~^T) to WG2 through the tile of
    i's parity, once WG2 has read chunk i - 2's from it. Two tiles, not one with a stage index:
    TileLang lowers a fragment-to-shared copy to stmatrix only into a whole tile."""
    st = i % 2
    if i >= 2:
        T.barrier_wait(empty[st], ((i // 2) % 2 + 1) % 2)
    if st == 0:
        T.copy(frag, tile0)
    else:
        T.copy(frag, tile1)
    T.fence_proxy_async()
    T.barrier_arrive(full[st])


@T.macro
def _gemm_handed(a, tile0, tile1, acc, full, i):
    """Three-warpgroup pass: WG2's GEMM acc = a tile^T on the tile WG0 handed over for chunk i."""
    st = i % 2
    T.barrier_wait(full[st], (i // 2) % 2)
    if st == 0:
        T.wgmma_gemm(a, tile0, acc, transpose_B=True, clear_accum=True)
    else:
        T.wgmma_gemm(a, tile1, acc, transpose_B=True, clear_accum=True)


@T.macro
def _inference_prologue(timeline, H, HV, stats, cu_seqlens, chunk_offsets, seg_offsets, seq_len, num_seqs, seg_chunks,
                        cp_log_tol, exact_cp, bx, hv):
    """Both inference passes' start (x = 2 * segment + V half, y = value head): the segment, the
    thread, the timeline's clock base, where the pass starts (warm-up, seed or sequence start) and
    the hoisted q/k head, gate-table row and first token."""
    pdl_wait()
    vh = bx % 2
    seg = bx // 2
    tx = T.get_thread_binding()
    t_start = T.alloc_local((1,), "int64")
    if timeline:
        t_start[0] = T.call_extern("int64", "clock64")
    loc = T.alloc_local((6,), "int32")
    n, bos, eos, nct, c_out, c_end, chunk_base = _locate_segment(seg, seq_len, num_seqs, seg_chunks,
                                                                 cu_seqlens, chunk_offsets, seg_offsets, loc)
    hk = hv // (HV // H)
    c0 = vh * (HEAD_DIM // 2)
    wu_s = T.alloc_shared((2, 64), "float32")
    wres = T.alloc_shared((1,), "int32")
    wv = T.alloc_local((8,), "float32")
    ix = T.alloc_local((4,), "int32")
    _forward_first_chunk(stats, chunk_base, hv, n, c_out, cp_log_tol, exact_cp, tx, wu_s, wres, wv, ix)
    c_begin = ix[3]
    nch = T.max(c_end - c_begin, 0)
    hk, gch0, tok0 = _hoist_indices(ix, hk, chunk_base, c_begin, bos)
    return seg, tx, t_start, n, eos, nct, c_out, c_end, c0, c_begin, nch, hk, gch0, tok0


@T.macro
def _out_rows(tab_s, sa, cp_f, rp_f, og_f, gr_f, gcol_f):
    """Output warpgroup of both inference passes: chunk sa's gate-table rows for P~ and o into
    registers; returns whether its rank-1 gate factors apply."""
    rank1 = tab_s[sa, GV_MISC, 1] > 0.5
    T.copy(tab_s[sa, GV_CP, :], cp_f)
    T.copy(tab_s[sa, GV_RP, :], rp_f)
    T.copy(tab_s[sa, GV_OG, :], og_f)
    if not rank1:
        T.copy(tab_s[sa, GV_GC, :], gr_f)
        T.copy(tab_s[sa, GV_GC, :], gcol_f)
    return rank1


@T.macro
def _p_tilde(pacc, p_bf, rp_f, cp_f, gr_f, gcol_f, rank1):
    """P~ = (Q K^T)[s <= t] with its row and column factors, in registers (the A operand of P~ v~):
    rank-1 gate factors, or the gate ratio per element for a chunk that decays by more than 80."""
    if rank1:
        for t, s in T.Parallel(CHUNK, CHUNK):
            p_bf[t, s] = T.if_then_else(s <= t, pacc[t, s] * rp_f[t] * cp_f[s], 0.0)
    else:
        for t, s in T.Parallel(CHUNK, CHUNK):
            p_bf[t, s] = T.if_then_else(
                s <= t, pacc[t, s] * T.exp2(T.min(gr_f[t] - gcol_f[s], 0.0) * LOG2E) * rp_f[t] * cp_f[s], 0.0)


@T.macro
def _o_out(oacc, oacc2, og_f, o_bf, o_s, o, t0, nvalid, warm, hv, c0):
    """o = diag(og) (Q S) + P~ v~, then out: nothing for a warm-up chunk, a full chunk through the
    o tile by TMA (the previous chunk's store must have left it), a partial one by masked stores."""
    DV = HEAD_DIM // 2
    for t, c in T.Parallel(CHUNK, DV):
        oacc[t, c] = oacc[t, c] * og_f[t] + oacc2[t, c]
    if warm:
        pass                             # warm-up chunk: no outputs
    elif nvalid == CHUNK:
        T.tma_store_wait()
        T.sync_threads(OUT_BARRIER_ID, 128)
        T.copy(oacc, o_bf)
        T.copy(o_bf, o_s)
        T.tma_copy(o_s, o[t0:t0 + CHUNK, hv, c0:c0 + DV])
    else:
        for t, c in T.Parallel(CHUNK, DV):
            if t < nvalid:
                o[t0 + t, hv, c0 + c] = oacc[t, c]


@T.macro
def _inference_pass(dtype, timeline, H, HV, q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets,
                    o, ht, seg_states, seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final, cp_log_tol,
                    exact_cp):
    """The inference kernel's body on three warpgroups (v13, header; `build(three_wg=True)`):
    o and the final state, no per-chunk states."""
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"
    with T.Kernel(2 * num_segs, HV, threads=384) as (bx, hv):
        seg, tx, t_start, n, eos, nct, c_out, c_end, c0, c_begin, nch, hk, gch0, tok0 = _inference_prologue(
            timeline, H, HV, stats, cu_seqlens, chunk_offsets, seg_offsets, seq_len, num_seqs, seg_chunks, cp_log_tol,
            exact_cp, bx, hv)

        # ring A (q, k, gate table: read by all three warpgroups, refilled by WG2, the last
        # reader, after its Q S); ring B (v, Au: read by WG0, which refills it; Aw: by WG1)
        q_s = T.alloc_shared((NA, C, D), dtype)
        k_s = T.alloc_shared((NA, C, D), dtype)
        tab_s = T.alloc_shared((NA, GV_FWD_ROWS, C), acc)
        v_s = T.alloc_shared((NB, C, DV), dtype)
        au_s = T.alloc_shared((NB, C, C), dtype)
        aw_s = T.alloc_shared((NB, C, C), dtype)
        # WG1 -> WG0: -w~, one buffer (released by uempty after the v~ GEMM)
        w_s = T.alloc_shared((C, D), dtype)         # -w~ [t][k]
        # WG0 -> WG2: S^T at the chunk's start and v~^T, two buffers each (chunk parity), so
        # that WG0 can run a chunk ahead of WG2 (with one, WG0 waited for WG2's previous Q S:
        # the v12 timeline). Separate tiles, not a stage index: see _hand_off.
        sb_s0 = T.alloc_shared((DV, D), dtype)      # S^T [c][k], even chunks
        sb_s1 = T.alloc_shared((DV, D), dtype)      # odd chunks
        vn_s0 = T.alloc_shared((DV, C), dtype)      # v~^T [c][t], even chunks
        vn_s1 = T.alloc_shared((DV, C), dtype)
        o_s = T.alloc_shared((C, DV), dtype)
        fullA = T.alloc_barrier(arrive_count=[128] * NA)
        emptyA = T.alloc_barrier(arrive_count=[384] * NA)     # all three; WG2 refills
        fullB = T.alloc_barrier(arrive_count=[128] * NB)
        emptyB = T.alloc_barrier(arrive_count=[128] * NB)     # WG1 (Aw); WG0 (v, Au) refills
        pfull = T.alloc_barrier(arrive_count=[128])           # -w~ written (WG1)
        uempty = T.alloc_barrier(arrive_count=[128])          # -w~ read (WG0)
        sfull = T.alloc_barrier(arrive_count=[128, 128])      # S^T written (WG0), per parity
        sempty = T.alloc_barrier(arrive_count=[128, 128])     # S^T read (WG2)
        vfull = T.alloc_barrier(arrive_count=[128, 128])      # v~^T written (WG0)
        vempty = T.alloc_barrier(arrive_count=[128, 128])     # v~^T read (WG2)

        if n >= 0:
            if tx < 128:
                # ------------------------------ WG0: state ------------------------------
                T.set_max_nreg(REG_STATE, 1)
                S = T.alloc_fragment((DV, D), acc)          # S^T [c][k]
                S_bf = T.alloc_fragment((DV, D), dtype)
                vacc = T.alloc_fragment((DV, C), acc)       # v~^T [c][t]
                vn_bf = T.alloc_fragment((DV, C), dtype)
                vnd_bf = T.alloc_fragment((DV, C), dtype)
                dec_f = T.alloc_fragment((C,), acc)
                egl = T.alloc_local((1,), acc)
                if has_h0 != 0 and c_begin == 0:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = h0[n, hv, kk, c0 + c]
                elif exact_cp != 0 and c_out > 0 and c_begin == c_out:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = seg_states[seg, hv, kk, c0 + c]
                else:
                    T.clear(S)
                for i in T.serial(nch):
                    sa = i % NA
                    pa = (i // NA) % 2
                    sb = i % NB
                    pb = (i // NB) % 2
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 0, t_start)
                    # u~^T = V^T Au^T straight into the v~ accumulator (fp32, no hand-off):
                    # it needs no state, so it is issued before the wait for WG1's -w~
                    T.barrier_wait(fullB[sb], pb)
                    T.wgmma_gemm(v_s[sb, :, :], au_s[sb, :, :], vacc, transpose_A=True, transpose_B=True,
                                 clear_accum=True)
                    T.copy(S, S_bf)
                    T.barrier_wait(pfull[0], i % 2)
                    T.barrier_wait(fullA[sa], pa)
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 1, t_start)
                    T.wgmma_gemm(S_bf, w_s, vacc, transpose_B=True)
                    T.wait_wgmma(1)                         # the u~ GEMM: v, Au read
                    # ring B: chunk i + NB into this stage once WG1 has read its Aw (WG1 runs
                    # ahead), issued under the v~ GEMM. WG0 is the stage's last reader; when WG1
                    # refilled it, the load for its next chunk left one chunk before it was
                    # needed and WG1 waited on fullB (ncu: a third of its samples)
                    if i + NB < nch:
                        T.barrier_wait(emptyB[sb], pb)
                        _load_ring_b(v, wy, v_s, au_s, aw_s, fullB, sb, i + NB, tok0, gch0, hv, c0)
                    # S^T of the chunk's start for WG2's o = Q S, under the v~ GEMM (both
                    # only read S_bf)
                    _hand_off(S_bf, sb_s0, sb_s1, sfull, sempty, i)
                    T.copy(tab_s[sa, GV_DEC, :], dec_f)
                    egl[0] = tab_s[sa, GV_MISC, 0]
                    T.wait_wgmma(0)
                    T.barrier_arrive(uempty[0])
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 2, t_start)
                    for c, t in T.Parallel(DV, C):
                        vnd_bf[c, t] = vacc[c, t] * dec_f[t]
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = S[c, kk] * egl[0]
                    T.wgmma_gemm(vnd_bf, k_s[sa, :, :], S)
                    # v~^T for WG2's P~ v~, under the update GEMM
                    for c, t in T.Parallel(DV, C):
                        vn_bf[c, t] = vacc[c, t]
                    _hand_off(vn_bf, vn_s0, vn_s1, vfull, vempty, i)
                    T.wait_wgmma(0)
                    T.barrier_arrive(emptyA[sa])
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 3, t_start)
                if store_final != 0 and c_end == nct:
                    for c, kk in T.Parallel(DV, D):
                        ht[n, hv, kk, c0 + c] = S[c, kk]

            elif tx < 256:
                # ---------- WG1: prep (-w~, a chunk ahead) and the first loads of both rings ----------
                T.set_max_nreg(REG_PREP, 0)
                wacc = T.alloc_fragment((C, D), acc)
                for j in T.serial(T.min(nch, NA)):
                    _load_ring_a(q, k, gvec, q_s, k_s, tab_s, fullA, j, j, tok0, gch0, hk, hv)
                for j in T.serial(T.min(nch, NB)):
                    _load_ring_b(v, wy, v_s, au_s, aw_s, fullB, j, j, tok0, gch0, hv, c0)
                for i in T.serial(nch):
                    sa = i % NA
                    pa = (i // NA) % 2
                    sb = i % NB
                    pb = (i // NB) % 2
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 16, t_start)
                    T.barrier_wait(fullB[sb], pb)
                    T.barrier_wait(fullA[sa], pa)
                    T.wgmma_gemm(aw_s[sb, :, :], k_s[sa, :, :], wacc, clear_accum=True)
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 18, t_start)
                    T.wait_wgmma(0)
                    T.barrier_arrive(emptyA[sa])
                    T.barrier_arrive(emptyB[sb])
                    if i >= 1:
                        T.barrier_wait(uempty[0], (i - 1) % 2)
                    T.copy(wacc, w_s)
                    T.fence_proxy_async()
                    T.barrier_arrive(pfull[0])
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 19, t_start)
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 20, t_start)

            else:
                # ---------- WG2: output (P~ in registers, o = Q S + P~ v~, o store) ----------
                T.set_max_nreg(REG_OUT, 0)
                pacc = T.alloc_fragment((C, C), acc)        # (Q K^T) [t][s]
                p_bf = T.alloc_fragment((C, C), dtype)      # P~ [t][s], the A operand
                oacc = T.alloc_fragment((C, DV), acc)       # o [t][c]: Q S part
                oacc2 = T.alloc_fragment((C, DV), acc)      # o: P~ v~ part
                o_bf = T.alloc_fragment((C, DV), dtype)
                cp_f = T.alloc_fragment((C,), acc)
                rp_f = T.alloc_fragment((C,), acc)
                og_f = T.alloc_fragment((C,), acc)
                gr_f = T.alloc_fragment((C,), acc)
                gcol_f = T.alloc_fragment((C,), acc)
                for i in T.serial(nch):
                    sa = i % NA
                    pa = (i // NA) % 2
                    st = i % 2                              # S^T / v~^T buffer
                    t0 = tok0 + i * C
                    nvalid = T.min(eos - t0, C)
                    if timeline:
                        if tx == 256:
                            _stamp(ht, bx, hv, i, 24, t_start)
                    T.barrier_wait(fullA[sa], pa)
                    T.wgmma_gemm(q_s[sa, :, :], k_s[sa, :, :], pacc, transpose_B=True, clear_accum=True)
                    rank1 = _out_rows(tab_s, sa, cp_f, rp_f, og_f, gr_f, gcol_f)
                    _gemm_handed(q_s[sa, :, :], sb_s0, sb_s1, oacc, sfull, i)
                    T.wait_wgmma(1)
                    _p_tilde(pacc, p_bf, rp_f, cp_f, gr_f, gcol_f, rank1)
                    T.wait_wgmma(0)
                    T.barrier_arrive(sempty[st])          # S^T read: WG0 may write chunk i + 2's
                    # ring A: WG2 is done with the stage (Q K^T, Q S complete, its gate rows in
                    # registers): chunk i + NA into it once WG0 and WG1 are done too (they run
                    # ahead). Here, not after the o store: ~1.3k cycles more lead for WG1
                    T.barrier_arrive(emptyA[sa])
                    if i + NA < nch:
                        T.barrier_wait(emptyA[sa], pa)
                        _load_ring_a(q, k, gvec, q_s, k_s, tab_s, fullA, sa, i + NA, tok0, gch0, hk, hv)
                    if timeline:
                        if tx == 256:
                            _stamp(ht, bx, hv, i, 25, t_start)
                    _gemm_handed(p_bf, vn_s0, vn_s1, oacc2, vfull, i)
                    T.wait_wgmma(0)
                    T.barrier_arrive(vempty[st])
                    if timeline:
                        if tx == 256:
                            _stamp(ht, bx, hv, i, 26, t_start)
                    _o_out(oacc, oacc2, og_f, o_bf, o_s, o, t0, nvalid, c_begin + i < c_out, hv, c0)
                    if timeline:
                        if tx == 256:
                            _stamp(ht, bx, hv, i, 27, t_start)
                T.tma_store_wait()


@T.macro
def _v14_w_term(tab_s, sa, cu_f, cw_f, yacc, y_bf, au, vacc, vacc_scale):
    """v14's v~ term from the state: f = cw / cu from the gate table (common.aw_over_au), computed
    under the S^T K^T GEMM, then, once it is done,
    Y = S^T K^T with its columns scaled by f, rounded once, and v~^T += Y Au^T. vacc_scale (None,
    or a local [1]) multiplies the u~ part first (cp_summary_v14's M blocks: u = 0)."""
    T.copy(tab_s[sa, GV_CU, :], cu_f)
    T.copy(tab_s[sa, GV_CW, :], cw_f)
    for s in T.Parallel(CHUNK):
        cw_f[s] = aw_over_au(cu_f[s], cw_f[s])
    T.wait_wgmma(0)
    if vacc_scale is not None:
        for c, t in T.Parallel(HEAD_DIM // 2, CHUNK):
            vacc[c, t] = vacc[c, t] * vacc_scale[0]
    for c, s in T.Parallel(HEAD_DIM // 2, CHUNK):
        y_bf[c, s] = yacc[c, s] * cw_f[s]
    T.wgmma_gemm(y_bf, au, vacc, transpose_B=True)


@T.macro
def _inference_pass_v14(dtype, timeline, H, HV, q, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets,
                    o, ht, seg_states, seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final, cp_log_tol,
                    exact_cp):
    """The inference kernel's body on two warpgroups (v14, header; `build(v14=True)`): o and the
    final state, no per-chunk states."""
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"
    with T.Kernel(2 * num_segs, HV, threads=256) as (bx, hv):
        seg, tx, t_start, n, eos, nct, c_out, c_end, c0, c_begin, nch, hk, gch0, tok0 = _inference_prologue(
            timeline, H, HV, stats, cu_seqlens, chunk_offsets, seg_offsets, seq_len, num_seqs, seg_chunks, cp_log_tol,
            exact_cp, bx, hv)

        # ring A (q, k, gate table: read by both warpgroups, refilled by the output warpgroup, the
        # last reader, after its Q S); ring B (v, Au: read and refilled by WG0 alone)
        q_s = T.alloc_shared((NA, C, D), dtype)
        k_s = T.alloc_shared((NA, C, D), dtype)
        tab_s = T.alloc_shared((NA, GV_FWD_ROWS, C), acc)
        v_s = T.alloc_shared((NB, C, DV), dtype)
        au_s = T.alloc_shared((NB, C, C), dtype)
        # WG0 -> WG2: S^T at the chunk's start and v~^T, two buffers each (chunk parity), so
        # that WG0 can run a chunk ahead of WG2 (with one, WG0 waited for WG2's previous Q S:
        # the v12 timeline). Separate tiles, not a stage index: see _hand_off.
        sb_s0 = T.alloc_shared((DV, D), dtype)      # S^T [c][k], even chunks
        sb_s1 = T.alloc_shared((DV, D), dtype)      # odd chunks
        vn_s0 = T.alloc_shared((DV, C), dtype)      # v~^T [c][t], even chunks
        vn_s1 = T.alloc_shared((DV, C), dtype)
        o_s = T.alloc_shared((C, DV), dtype)
        fullA = T.alloc_barrier(arrive_count=[128] * NA)
        emptyA = T.alloc_barrier(arrive_count=[256] * NA)     # both; WG2 refills
        fullB = T.alloc_barrier(arrive_count=[128] * NB)
        sfull = T.alloc_barrier(arrive_count=[128, 128])      # S^T written (WG0), per parity
        sempty = T.alloc_barrier(arrive_count=[128, 128])     # S^T read (WG2)
        vfull = T.alloc_barrier(arrive_count=[128, 128])      # v~^T written (WG0)
        vempty = T.alloc_barrier(arrive_count=[128, 128])     # v~^T read (WG2)

        if n >= 0:
            if tx < 128:
                # ------------------------------ WG0: state ------------------------------
                S = T.alloc_fragment((DV, D), acc)          # S^T [c][k]
                S_bf = T.alloc_fragment((DV, D), dtype)
                vacc = T.alloc_fragment((DV, C), acc)       # v~^T [c][t]
                yacc = T.alloc_fragment((DV, C), acc)       # Y = S^T K^T [c][s]
                y_bf = T.alloc_fragment((DV, C), dtype)
                cu_f = T.alloc_fragment((C,), acc)
                cw_f = T.alloc_fragment((C,), acc)
                vn_bf = T.alloc_fragment((DV, C), dtype)
                vnd_bf = T.alloc_fragment((DV, C), dtype)
                dec_f = T.alloc_fragment((C,), acc)
                egl = T.alloc_local((1,), acc)
                # the first stages of both rings, before the initial state's global loads
                for j in T.serial(T.min(nch, NA)):
                    _load_ring_a(q, k, gvec, q_s, k_s, tab_s, fullA, j, j, tok0, gch0, hk, hv)
                for j in T.serial(T.min(nch, NB)):
                    _load_ring_b_au(v, wy, v_s, au_s, fullB, j, j, tok0, gch0, hv, c0)
                if has_h0 != 0 and c_begin == 0:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = h0[n, hv, kk, c0 + c]
                elif exact_cp != 0 and c_out > 0 and c_begin == c_out:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = seg_states[seg, hv, kk, c0 + c]
                else:
                    T.clear(S)
                for i in T.serial(nch):
                    sa = i % NA
                    pa = (i // NA) % 2
                    sb = i % NB
                    pb = (i // NB) % 2
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 0, t_start)
                    # u~^T = V^T Au^T straight into the v~ accumulator (it needs no state)
                    T.barrier_wait(fullB[sb], pb)
                    T.wgmma_gemm(v_s[sb, :, :], au_s[sb, :, :], vacc, transpose_A=True, transpose_B=True,
                                 clear_accum=True)
                    T.copy(S, S_bf)
                    T.barrier_wait(fullA[sa], pa)
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 1, t_start)
                    # v~^T += S^T (-w~)^T with -w~ = Aw K = Au diag(f) K, f = cw / cu, taken as
                    # ((S^T K^T) diag(f)) Au^T: two GEMMs on this warpgroup's own operands (K
                    # from ring A, Au from ring B) instead of a -w~ tile a prep warpgroup formed
                    # a chunk ahead (v13: 16 KB written and read back a chunk, its barrier pair,
                    # a GEMM of 1 MF run in both V halves, and an Aw tile). One rounding, where
                    # -w~'s was (benchmarks/emulate_forward_roundings.py: errors as v13's or
                    # lower); f = -exp(gc) rk makes the rounded operand the state times
                    # normalised keys, bounded like the state (raw keys could pass fp16's range).
                    T.wgmma_gemm(S_bf, k_s[sa, :, :], yacc, transpose_B=True, clear_accum=True)
                    # S^T of the chunk's start for WG2's o = Q S, under the Y GEMM (both only
                    # read S_bf)
                    _hand_off(S_bf, sb_s0, sb_s1, sfull, sempty, i)
                    T.copy(tab_s[sa, GV_DEC, :], dec_f)
                    egl[0] = tab_s[sa, GV_MISC, 0]
                    _v14_w_term(tab_s, sa, cu_f, cw_f, yacc, y_bf, au_s[sb, :, :], vacc, None)
                    T.wait_wgmma(0)
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 2, t_start)
                    for c, t in T.Parallel(DV, C):
                        vnd_bf[c, t] = vacc[c, t] * dec_f[t]
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = S[c, kk] * egl[0]
                    T.wgmma_gemm(vnd_bf, k_s[sa, :, :], S)
                    # v~^T for WG2's P~ v~, under the update GEMM
                    for c, t in T.Parallel(DV, C):
                        vn_bf[c, t] = vacc[c, t]
                    _hand_off(vn_bf, vn_s0, vn_s1, vfull, vempty, i)
                    # ring B: WG0 is the stage's only reader (its two Au GEMMs are complete):
                    # chunk i + NB into it ~1.5 chunks before it is needed, under the update GEMM
                    if i + NB < nch:
                        _load_ring_b_au(v, wy, v_s, au_s, fullB, sb, i + NB, tok0, gch0, hv, c0)
                    T.wait_wgmma(0)
                    T.barrier_arrive(emptyA[sa])
                    if timeline:
                        if tx == 0:
                            _stamp(ht, bx, hv, i, 3, t_start)
                if store_final != 0 and c_end == nct:
                    for c, kk in T.Parallel(DV, D):
                        ht[n, hv, kk, c0 + c] = S[c, kk]

            else:
                # ---------- WG2: output (P~ in registers, o = Q S + P~ v~, o store) ----------
                pacc = T.alloc_fragment((C, C), acc)        # (Q K^T) [t][s]
                p_bf = T.alloc_fragment((C, C), dtype)      # P~ [t][s], the A operand
                oacc = T.alloc_fragment((C, DV), acc)       # o [t][c]: Q S part
                oacc2 = T.alloc_fragment((C, DV), acc)      # o: P~ v~ part
                o_bf = T.alloc_fragment((C, DV), dtype)
                cp_f = T.alloc_fragment((C,), acc)
                rp_f = T.alloc_fragment((C,), acc)
                og_f = T.alloc_fragment((C,), acc)
                gr_f = T.alloc_fragment((C,), acc)
                gcol_f = T.alloc_fragment((C,), acc)
                # Q K^T runs one chunk ahead: chunk i + 1's is issued behind chunk i's P~ v~, so
                # that it overlaps chunk i's combine and o store instead of opening chunk i + 1's
                # chain (v14b)
                if nch > 0:
                    T.barrier_wait(fullA[0], 0)
                    T.wgmma_gemm(q_s[0, :, :], k_s[0, :, :], pacc, transpose_B=True, clear_accum=True)
                for i in T.serial(nch):
                    sa = i % NA
                    pa = (i // NA) % 2
                    st = i % 2                              # S^T / v~^T buffer
                    sn = (i + 1) % NA
                    pn = ((i + 1) // NA) % 2
                    t0 = tok0 + i * C
                    nvalid = T.min(eos - t0, C)
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 24, t_start)
                    rank1 = _out_rows(tab_s, sa, cp_f, rp_f, og_f, gr_f, gcol_f)
                    _gemm_handed(q_s[sa, :, :], sb_s0, sb_s1, oacc, sfull, i)
                    T.wait_wgmma(1)                         # Q K^T of chunk i
                    _p_tilde(pacc, p_bf, rp_f, cp_f, gr_f, gcol_f, rank1)
                    T.wait_wgmma(0)
                    T.barrier_arrive(sempty[st])          # S^T read: WG0 may write chunk i + 2's
                    # ring A: WG2 is done with the stage (Q K^T, Q S complete, its gate rows in
                    # registers): chunk i + NA into it once WG0 is done too (it runs ahead)
                    T.barrier_arrive(emptyA[sa])
                    if i + NA < nch:
                        T.barrier_wait(emptyA[sa], pa)
                        _load_ring_a(q, k, gvec, q_s, k_s, tab_s, fullA, sa, i + NA, tok0, gch0, hk, hv)
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 25, t_start)
                    _gemm_handed(p_bf, vn_s0, vn_s1, oacc2, vfull, i)
                    if i + 1 < nch:
                        T.barrier_wait(fullA[sn], pn)
                        T.wgmma_gemm(q_s[sn, :, :], k_s[sn, :, :], pacc, transpose_B=True, clear_accum=True)
                        T.wait_wgmma(1)                     # P~ v~ of chunk i
                    else:
                        T.wait_wgmma(0)
                    T.barrier_arrive(vempty[st])
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 26, t_start)
                    _o_out(oacc, oacc2, og_f, o_bf, o_s, o, t0, nvalid, c_begin + i < c_out, hv, c0)
                    if timeline:
                        if tx == 128:
                            _stamp(ht, bx, hv, i, 27, t_start)
                T.tma_store_wait()


@T.macro
def _load_ring_a_k(k, gvec, k_s, tab_s, full, stage, j, tok0, gch0, hk, hv):
    """cp_summary_v14: chunk j's k and gate-table rows into ring A's stage (no q), then the
    warpgroup's arrival."""
    T.tma_copy(k[tok0 + j * CHUNK:tok0 + j * CHUNK + CHUNK, hk, 0:HEAD_DIM], k_s[stage, :, :], barrier=full[stage])
    T.tma_copy(gvec[gch0 + j, hv, 0:GV_FWD_ROWS, 0:CHUNK], tab_s[stage, :, :], barrier=full[stage])
    T.barrier_arrive(full[stage])


@T.macro
def _state_pass_v14(dtype, summary, H, HV, k, v, wy, gvec, stats, h0, cu_seqlens, chunk_offsets, seg_offsets,
                    ht, hsT, seg_states, summ, kinds, seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final,
                    store_states, cp_log_tol, exact_cp):
    """v14's state loop on one warpgroup (128 threads: no outputs, so no hand-offs and no second
    warpgroup), so the gate table needs no Aw tile; two CTAs fit an SM (~104 KB of shared memory,
    206 registers). Rings: A = k + gate rows (3 deep), B = v + Au (2 deep); the warpgroup is their
    only reader and refills each stage once its GEMMs on it are done.

    summary=True: `cp_summary_v14`, pass 1 of the exact CP correction for fused_fwd_v14 (cp_summary
    in the header): grid (4 * segments, HV), bx % 4 = 0, 1 the V halves of F, 2, 3 the K halves of
    M (identity start, u = 0), the same run / kind decisions as cp_summary.
    summary=False: `fused_fwd_states_v14`, the backward's state pass (fused_fwd_states): grid
    (2 * segments, HV), S^T in the input dtype at every chunk's start into hsT through a 16 KB tile
    and a TMA store under the S^T K^T GEMM, the final state into ht; starts as the other forward
    kernels do (warm-up, the exact correction's seed, or the sequence's first chunk)."""
    C = CHUNK
    D = HEAD_DIM
    DV = HEAD_DIM // 2
    acc = "float32"
    with T.Kernel((4 if summary else 2) * num_segs, HV, threads=128) as (bx, hv):
        pdl_wait()
        vh = bx % 2
        if summary:
            is_m = (bx // 2) % 2      # 1: a K half of M (identity start, u = 0)
            seg = bx // 4
        else:
            seg = bx // 2
        tx = T.get_thread_binding()
        loc = T.alloc_local((6,), "int32")
        n, bos, eos, nct, c_out, c_end, chunk_base = _locate_segment(seg, seq_len, num_seqs, seg_chunks,
                                                                     cu_seqlens, chunk_offsets, seg_offsets, loc)
        hk = hv // (HV // H)
        c0 = vh * DV
        wu_s = T.alloc_shared((2, 64), acc)
        wres = T.alloc_shared((1,), "int32")
        wv = T.alloc_local((8,), acc)
        ix = T.alloc_local((6,), "int32")
        if summary:
            # which CTAs run, where they start and what kind of summary they make: as cp_summary
            ix[4] = 0                                 # 1: this CTA runs
            ix[5] = KIND_CUT
            ix[3] = c_out
            if n >= 0 and c_end < nct:
                cp_warmup_chunks(stats, chunk_base, hv, c_end - 1, -1, c_end, cp_log_tol, tx, wu_s, wres, wv)
                ix[4] = T.if_then_else(wres[0] > 0, 0, 1)
            if ix[4] != 0 and c_out > 0:
                cp_warmup_chunks(stats, chunk_base, hv, c_out - 1, -1, c_out, cp_log_tol, tx, wu_s, wres, wv)
                ix[5] = T.if_then_else(wres[0] > 0, KIND_CUT, KIND_RELATIVE)
                ix[3] = T.if_then_else(wres[0] > 0, c_out - wres[0], c_out)
            if is_m != 0 and ix[5] == KIND_CUT:
                ix[4] = 0                             # a cut's M is never read
            kind = ix[5]
            runs = ix[4] != 0
        else:
            _forward_first_chunk(stats, chunk_base, hv, n, c_out, cp_log_tol, exact_cp, tx, wu_s, wres, wv, ix)
            runs = n >= 0
        c_begin = ix[3]
        nch = T.max(c_end - c_begin, 0)
        hk, gch0, tok0 = _hoist_indices(ix, hk, chunk_base, c_begin, bos)

        k_s = T.alloc_shared((NA, C, D), dtype)
        tab_s = T.alloc_shared((NA, GV_FWD_ROWS, C), acc)
        v_s = T.alloc_shared((NB, C, DV), dtype)
        au_s = T.alloc_shared((NB, C, C), dtype)
        if not summary:
            hs_s = T.alloc_shared((DV, D), dtype)   # S^T of the chunk start, on its way to hsT
        fullA = T.alloc_barrier(arrive_count=[128] * NA)
        fullB = T.alloc_barrier(arrive_count=[128] * NB)
        if runs:
            S = T.alloc_fragment((DV, D), acc)          # S^T [c][k] (M: a block of columns)
            S_bf = T.alloc_fragment((DV, D), dtype)
            vacc = T.alloc_fragment((DV, C), acc)       # v~^T [c][t]
            yacc = T.alloc_fragment((DV, C), acc)       # Y = S^T K^T [c][s]
            y_bf = T.alloc_fragment((DV, C), dtype)
            vnd_bf = T.alloc_fragment((DV, C), dtype)
            dec_f = T.alloc_fragment((C,), acc)
            cu_f = T.alloc_fragment((C,), acc)
            cw_f = T.alloc_fragment((C,), acc)
            egl = T.alloc_local((1,), acc)
            if summary:
                um = T.alloc_local((1,), acc)
                um[0] = T.if_then_else(is_m != 0, 0.0, 1.0)   # M: u = 0 (T_c applied to its columns)
            for j in T.serial(T.min(nch, NA)):
                _load_ring_a_k(k, gvec, k_s, tab_s, fullA, j, j, tok0, gch0, hk, hv)
            for j in T.serial(T.min(nch, NB)):
                _load_ring_b_au(v, wy, v_s, au_s, fullB, j, j, tok0, gch0, hv, c0)
            if summary:
                if is_m != 0:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = T.if_then_else(kk == c0 + c, 1.0, 0.0)
                elif has_h0 != 0 and c_begin == 0:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = h0[n, hv, kk, c0 + c]
                else:
                    T.clear(S)
            else:
                if has_h0 != 0 and c_begin == 0:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = h0[n, hv, kk, c0 + c]
                elif exact_cp != 0 and c_out > 0 and c_begin == c_out:
                    for c, kk in T.Parallel(DV, D):
                        S[c, kk] = seg_states[seg, hv, kk, c0 + c]
                else:
                    T.clear(S)
            for i in T.serial(nch):
                sa = i % NA
                pa = (i // NA) % 2
                sb = i % NB
                pb = (i // NB) % 2
                T.barrier_wait(fullB[sb], pb)
                T.wgmma_gemm(v_s[sb, :, :], au_s[sb, :, :], vacc, transpose_A=True, transpose_B=True,
                             clear_accum=True)
                T.copy(S, S_bf)
                T.barrier_wait(fullA[sa], pa)
                T.wgmma_gemm(S_bf, k_s[sa, :, :], yacc, transpose_B=True, clear_accum=True)
                if not summary:
                    # for the backward: the state at this chunk's start (its own chunks only), in
                    # the input dtype as the GEMMs here use it, under the GEMM (both only read
                    # S_bf); the previous chunk's store must have left hs_s first
                    if store_states != 0 and c_begin + i >= c_out:
                        T.tma_store_wait()
                        T.sync_threads(5, 128)
                        T.copy(S_bf, hs_s)
                        T.tma_copy(hs_s, hsT[gch0 + i, hv, c0:c0 + DV, 0:D])
                T.copy(tab_s[sa, GV_DEC, :], dec_f)
                egl[0] = tab_s[sa, GV_MISC, 0]
                _v14_w_term(tab_s, sa, cu_f, cw_f, yacc, y_bf, au_s[sb, :, :], vacc, um if summary else None)
                T.wait_wgmma(0)
                for c, t in T.Parallel(DV, C):
                    vnd_bf[c, t] = vacc[c, t] * dec_f[t]
                for c, kk in T.Parallel(DV, D):
                    S[c, kk] = S[c, kk] * egl[0]
                T.wgmma_gemm(vnd_bf, k_s[sa, :, :], S)
                if i + NB < nch:
                    _load_ring_b_au(v, wy, v_s, au_s, fullB, sb, i + NB, tok0, gch0, hv, c0)
                T.wait_wgmma(0)
                if i + NA < nch:
                    _load_ring_a_k(k, gvec, k_s, tab_s, fullA, sa, i + NA, tok0, gch0, hk, hv)
            if summary:
                for c, kk in T.Parallel(DV, D):
                    summ[seg, hv, kk, is_m * D + c0 + c] = S[c, kk]
                if tx == 0 and bx % 4 == 0:
                    kinds[seg, hv] = kind
            else:
                T.tma_store_wait()
                if store_final != 0 and c_end == nct:
                    for c, kk in T.Parallel(DV, D):
                        ht[n, hv, kk, c0 + c] = S[c, kk]


def variants():
    """The two-warpgroup inference kernel (v11, `fused_fwd`: FLASHGDN_FUSED_FWD_3WG=0), the
    backward's state pass (`fused_fwd_states`, no o), the state pass that forms o too
    (`fused_fwd_o_states`, for C API callers that want both), pass 1 of the exact CP correction
    (`cp_summary`), the three-warpgroup inference kernel (`fused_fwd3`, v13, the default) and its
    two-warpgroup successor (`fused_fwd_v14`, opt-in until measured) with its cp_summary
    (`cp_summary_v14`) and states-only pass (`fused_fwd_states_v14`), per input dtype."""
    return [(variant_symbol(name, dt, "float32"),
             dict(dtype=dt, states=states, outputs=outputs, summary=summ, three_wg=wg3, v14=v14))
            for name, states, outputs, summ, wg3, v14 in (("fused_fwd", False, True, False, False, False),
                                                          ("fused_fwd_states", True, False, False, False, False),
                                                          ("fused_fwd_o_states", True, True, False, False, False),
                                                          ("cp_summary", False, False, True, False, False),
                                                          ("fused_fwd3", False, True, False, True, False),
                                                          ("fused_fwd_v14", False, True, False, False, True),
                                                          ("cp_summary_v14", False, False, True, False, True),
                                                          ("fused_fwd_states_v14", True, False, False, False, True))
            for dt in DTYPES]
