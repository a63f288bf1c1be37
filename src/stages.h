// Internal launchers of the generated kernels, one per kernel module. They validate nothing
// (the C API entry points do) and map the generated entry points' errors to fgdn_status.
#pragma once

#include <cstdint>

#include "launch.h"

namespace flashgdn {

fgdn_status run_seq_plan(const int32_t* cu_seqlens, int32_t* chunk_offsets, int32_t* seg_offsets, int num_seqs,
                         int seg_chunks, cudaStream_t stream);

fgdn_status run_chunk_prep(int variant, const fgdn_seqs& seqs, int num_qk_heads, int num_v_heads, int use_l2norm,
                           float scale, const void* q, const void* k, const void* beta, const float* g, void* L,
                           float* stats, float* gate_vectors, cudaStream_t stream,   // L may be NULL: not stored
                           bool store_aw = true);   // false: no Aw tile in the table (the v14 kernels read none)

// The intra-card CP split of a call, planned once for the forward and the reverse pass alike:
// chunks per CTA item, the number of items per (value head, V half) (exact for uniform lengths,
// an upper bound for varlen), and where the exact correction's scratch lies (offsets from its
// start, 256-byte aligned; bytes = 0 when no sequence has two segments or restart_only).
struct CpSplit {
  int seg_chunks = 1 << 30;   // 1 << 30: a whole sequence
  long long num_segs = 0;
  bool exact = false;
  size_t summ_off = 0, kinds_off = 0, states_off = 0, bytes = 0;
};
CpSplit plan_cp_split(const fgdn_seqs& s, int cp_segment_chunks, int num_v_heads, bool restart_only);

struct FusedFwdLaunch {
  int variant;
  fgdn_seqs seqs;          // chunk_offsets: varlen only (the gate-vector table's row of a chunk)
  const int32_t* seg_offsets;
  int seg_chunks;          // chunks per CTA item (>= 1)
  int num_segs;            // grid: CTAs per (head, V half), an upper bound
  int num_qk_heads, num_v_heads;
  const void *q, *k, *v;
  const float* gate_vectors;
  const float* chunk_stats;   // chunk_prep's (sum g, max beta |k|^2) per chunk: the CP warm-up test
  float cp_log_tol;
  const float* h0;
  void* o;
  float* ht;
  void* chunk_states_t = nullptr;    // [num_chunks, HV, V, K] in the input dtype: S^T at every chunk's start, or NULL
  // exact CP correction (tool (a)): the true incoming state of every segment that cannot warm up,
  // [num_segs, HV, K, V] fp32 from run_cp_exact, or NULL (such segments restart at chunk 0)
  const float* seg_states = nullptr;
};
fgdn_status run_fused_fwd(const FusedFwdLaunch& a, cudaStream_t stream);

// FLASHGDN_FUSED_FWD_V14=1 (read once per process): the inference forward runs fused_fwd_v14 and
// its own chunk_prep call stores no Aw tile, the exact CP pass 1 runs cp_summary_v14, the
// backward's state pass fused_fwd_states_v14 and its reverse pass bwd_dstates_v14 /
// bwd_cp_summary_v14 (src/forward.cpp, backward.cpp, cp_exact.cpp).
bool use_fused_fwd_v14();

// Passes 1 and 2 of the exact CP correction for the split described by `a` (cp_summary, then
// cp_combine): fills seg_states for the segments that cannot warm up. summ: [num_segs, HV, K, 2K]
// fp32 scratch; kinds: [num_segs, HV] int32 scratch; seg_states: [num_segs, HV, K, V] fp32.
fgdn_status run_cp_exact(const FusedFwdLaunch& a, float* summ, int32_t* kinds, float* seg_states,
                         cudaStream_t stream);

// Pass 2 alone: reverse = 0 walks back to the nearest cut (forward states), 1 forward (the
// backward's state gradients at segment ends).
fgdn_status run_cp_combine(const fgdn_seqs& s, const int32_t* seg_offsets, int seg_chunks, int num_segs, int HV,
                           const float* stats, float cp_log_tol, const float* summ, const int32_t* kinds,
                           float* seg_states, int reverse, cudaStream_t stream);

// Passes 1 and 2 for the backward's reverse pass: bwd_cp_summary, then cp_combine (reverse).
struct BwdCpExactLaunch {
  bool dtype_fp16;
  fgdn_seqs seqs;
  const int32_t* seg_offsets;
  int seg_chunks, num_segs, num_qk_heads, num_v_heads;
  const void *q, *k, *d_out;
  const float* gate_vectors;
  const float* chunk_stats;
  const float* d_final_state;   // or NULL
  float cp_log_tol;
  float* summ;       // [num_segs, HV, K, 2K] scratch
  int32_t* kinds;    // [num_segs, HV] scratch
  float* seg_dstates;  // [num_segs, HV, K, V]: the state gradient at each needing segment's end
};
fgdn_status run_bwd_cp_exact(const BwdCpExactLaunch& a, cudaStream_t stream);

}  // namespace flashgdn
