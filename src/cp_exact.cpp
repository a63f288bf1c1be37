// Host launchers of the exact intra-card CP correction (tool (a), docs/context-parallelism.md):
// pass 1, each needed segment's F and M - the cp_summary variant of kernels_tl/fused_fwd.py
// (forward recurrence) and the bwd_cp_summary variant of kernels_tl/bwd_dstates.py (reverse) -
// and pass 2, kernels_tl/cp_combine.py (the true incoming state, or state gradient, of every
// segment that cannot warm up). fused_fwd / bwd_dstates then start those
// segments at their own boundary from seg_states.
#include "bwd_dstates_kernels.h"   // bwd_cp_summary_*: a variant of bwd_dstates
#include "cp_combine_kernels.h"
#include "fused_fwd_kernels.h"     // cp_summary_*: a variant of fused_fwd
#include "stages.h"

namespace flashgdn {
namespace {

using SummaryLaunch = int (*)(void* k, void* v, void* wy, void* gvec, void* stats, void* h0, void* cu_seqlens,
                              void* chunk_offsets, void* seg_offsets, void* summ, void* kinds, int seq_len,
                              int num_seqs, int seg_chunks, int num_segs, int has_h0, float cp_log_tol, int Ttot,
                              int H, int HV, int NCG, int NST, int NS1, int NSEG, cudaStream_t stream);
struct SummaryKernel {
  SummaryLaunch launch;
  const char* (*last_error)(void);
  const char* name;
};
// [dtype: 0 = bf16, 1 = fp16]
const SummaryKernel kSummary[2] = {
    {fgdn_cp_summary_bf16_bfp32_launch, fgdn_cp_summary_bf16_bfp32_last_error, "cp_summary bf16"},
    {fgdn_cp_summary_fp16_bfp32_launch, fgdn_cp_summary_fp16_bfp32_last_error, "cp_summary fp16"},
};
// fused_fwd_v14's pass 1 (one warpgroup, no Aw tile: the table may lack it then)
const SummaryKernel kSummary14[2] = {
    {fgdn_cp_summary_v14_bf16_bfp32_launch, fgdn_cp_summary_v14_bf16_bfp32_last_error, "cp_summary_v14 bf16"},
    {fgdn_cp_summary_v14_fp16_bfp32_launch, fgdn_cp_summary_v14_fp16_bfp32_last_error, "cp_summary_v14 fp16"},
};

}  // namespace

CpSplit plan_cp_split(const fgdn_seqs& s, int cp_segment_chunks, int num_v_heads, bool restart_only) {
  CpSplit p;
  const long long N = s.num_seqs;
  bool split;
  if (cp_segment_chunks > 0) p.seg_chunks = cp_segment_chunks;
  if (s.seq_len > 0) {
    const long long nct = (s.seq_len + 63) / 64, per_seq = (nct + p.seg_chunks - 1) / p.seg_chunks;
    p.num_segs = N * (per_seq > 1 ? per_seq : 1);
    split = per_seq > 1;
  } else {
    const long long bound = (long long)s.total_tokens / 64 + N;   // sum of ceil(len / 64)
    p.num_segs = cp_segment_chunks > 0 ? (bound + p.seg_chunks - 1) / p.seg_chunks + N : N;
    split = cp_segment_chunks > 0 && bound > p.seg_chunks;
  }
  p.exact = split && !restart_only && s.total_tokens > 0;
  if (p.exact) {   // summaries F | M and kinds (pass 1), incoming states (pass 2); fp32 / int32
    const size_t items = (size_t)p.num_segs * num_v_heads;
    p.kinds_off = align256(items * 128 * 256 * sizeof(float));
    p.states_off = align256(p.kinds_off + items * sizeof(int32_t));
    p.bytes = align256(p.states_off + items * 128 * 128 * sizeof(float));
  }
  return p;
}

fgdn_status run_cp_exact(const FusedFwdLaunch& a, float* summ, int32_t* kinds, float* seg_states,
                         cudaStream_t stream) {
  // with v14 the inference forward's table has no Aw tile (cp_summary_v14 reads none)
  const SummaryKernel& kern = (use_fused_fwd_v14() ? kSummary14 : kSummary)[a.variant >= 2 ? 1 : 0];
  const int ncg = a.seqs.num_chunks > 0 ? a.seqs.num_chunks : 1;
  const void* any = a.gate_vectors;   // for pointers read in some modes only (varlen, h0)
  int rc = kern.launch(const_cast<void*>(a.k), const_cast<void*>(a.v), const_cast<float*>(a.gate_vectors),
                       const_cast<float*>(a.gate_vectors), const_cast<float*>(a.chunk_stats), or_valid(a.h0, any),
                       or_valid(a.seqs.cu_seqlens, any), or_valid(a.seqs.chunk_offsets, any),
                       or_valid(a.seg_offsets, any), summ, kinds,
                       /*seq_len=*/a.seqs.seq_len, /*num_seqs=*/a.seqs.num_seqs, /*seg_chunks=*/a.seg_chunks,
                       /*num_segs=*/a.num_segs, /*has_h0=*/a.h0 != nullptr, /*cp_log_tol=*/a.cp_log_tol,
                       /*Ttot=*/a.seqs.total_tokens, /*H=*/a.num_qk_heads, /*HV=*/a.num_v_heads, /*NCG=*/ncg,
                       /*NST=*/a.h0 ? a.seqs.num_seqs : 1, /*NS1=*/a.seqs.num_seqs + 1, /*NSEG=*/a.num_segs, stream);
  FGDN_TRY(launch_result(rc, kern.name, rc ? kern.last_error() : nullptr));
  return run_cp_combine(a.seqs, a.seg_offsets, a.seg_chunks, a.num_segs, a.num_v_heads, a.chunk_stats, a.cp_log_tol,
                        summ, kinds, seg_states, /*reverse=*/0, stream);
}

fgdn_status run_cp_combine(const fgdn_seqs& s, const int32_t* seg_offsets, int seg_chunks, int num_segs, int HV,
                           const float* stats, float cp_log_tol, const float* summ, const int32_t* kinds,
                           float* seg_states, int reverse, cudaStream_t stream) {
  const int ncg = s.num_chunks > 0 ? s.num_chunks : 1;
  const void* any = kinds;   // for the arrays read by varlen only
  int rc = fgdn_cp_combine_launch(const_cast<float*>(stats), or_valid(s.cu_seqlens, any),
                                  or_valid(s.chunk_offsets, any), or_valid(seg_offsets, any), const_cast<float*>(summ),
                                  const_cast<int32_t*>(kinds), seg_states, /*seq_len=*/s.seq_len,
                                  /*num_seqs=*/s.num_seqs, seg_chunks, num_segs, cp_log_tol, reverse, /*NCG=*/ncg, HV,
                                  /*NS1=*/s.num_seqs + 1, /*NSEG=*/num_segs, stream);
  return launch_result(rc, "cp_combine", rc ? fgdn_cp_combine_last_error() : nullptr);
}

fgdn_status run_bwd_cp_exact(const BwdCpExactLaunch& a, cudaStream_t stream) {
  using Fn = int (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, int, int, int,
                     int, int, float, int, int, int, int, int, int, int, cudaStream_t);
  struct BwdSummaryKernel {
    Fn launch;
    const char* (*last_error)(void);
  };
  // [FLASHGDN_FUSED_FWD_V14: the reverse pass runs bwd_dstates_v14, so its summary variant too][dtype]
  static const BwdSummaryKernel kBwdSummary[2][2] = {
      {{fgdn_bwd_cp_summary_bf16_bfp32_launch, fgdn_bwd_cp_summary_bf16_bfp32_last_error},
       {fgdn_bwd_cp_summary_fp16_bfp32_launch, fgdn_bwd_cp_summary_fp16_bfp32_last_error}},
      {{fgdn_bwd_cp_summary_v14_bf16_bfp32_launch, fgdn_bwd_cp_summary_v14_bf16_bfp32_last_error},
       {fgdn_bwd_cp_summary_v14_fp16_bfp32_launch, fgdn_bwd_cp_summary_v14_fp16_bfp32_last_error}},
  };
  const BwdSummaryKernel& kern = kBwdSummary[use_fused_fwd_v14() ? 1 : 0][a.dtype_fp16 ? 1 : 0];
  const Fn launch = kern.launch;
  const char* (*last_error)(void) = kern.last_error;
  const fgdn_seqs& s = a.seqs;
  const void* any = a.gate_vectors;   // for pointers read in some modes only (varlen, dht)
  int rc = launch(const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.d_out),
                  // wy: the gated WY tiles at the end of the gate-vector table (read in the input dtype)
                  const_cast<float*>(a.gate_vectors), const_cast<float*>(a.gate_vectors), const_cast<float*>(a.chunk_stats),
                  or_valid(a.d_final_state, any), or_valid(s.cu_seqlens, any), or_valid(s.chunk_offsets, any),
                  or_valid(a.seg_offsets, any), a.summ, a.kinds, s.seq_len, s.num_seqs, a.seg_chunks,
                  a.num_segs, a.d_final_state != nullptr, a.cp_log_tol, s.total_tokens, a.num_qk_heads,
                  a.num_v_heads, s.num_chunks > 0 ? s.num_chunks : 1, a.d_final_state ? s.num_seqs : 1,
                  s.num_seqs + 1, a.num_segs, stream);
  FGDN_TRY(launch_result(rc, a.dtype_fp16 ? "bwd_cp_summary fp16" : "bwd_cp_summary bf16",
                         rc ? last_error() : nullptr));
  return run_cp_combine(s, a.seg_offsets, a.seg_chunks, a.num_segs, a.num_v_heads, a.chunk_stats, a.cp_log_tol,
                        a.summ, a.kinds, a.seg_dstates, /*reverse=*/1, stream);
}

}  // namespace flashgdn
