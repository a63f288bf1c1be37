// Host launchers of the exact intra-card CP correction (tool (a), docs/context-parallelism.md):
// kernels_tl/cp_summary.py / bwd_cp_summary.py (pass 1: each needed segment's F and M, forward /
// reverse recurrence) and kernels_tl/cp_combine.py (pass 2: the true incoming state, or state
// gradient, of every segment that cannot warm up). fused_fwd / bwd_dstates then start those
// segments at their own boundary from seg_states.
#include "bwd_cp_summary_kernels.h"
#include "cp_combine_kernels.h"
#include "cp_summary_kernels.h"
#include "stages.h"

namespace flashgdn {
namespace {

using SummaryLaunch = int (*)(void* k, void* v, void* L, void* gvec, void* stats, void* h0, void* cu_seqlens,
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

}  // namespace

fgdn_status run_cp_exact(const FusedFwdLaunch& a, float* summ, int32_t* kinds, float* seg_states,
                         cudaStream_t stream) {
  const SummaryKernel& kern = kSummary[a.variant >= 2 ? 1 : 0];
  const int ncg = a.seqs.num_chunks > 0 ? a.seqs.num_chunks : 1;
  // seg_offsets / chunk_offsets are read for varlen only; any valid address otherwise
  int32_t* seg_offsets = const_cast<int32_t*>(a.seg_offsets ? a.seg_offsets : a.seqs.chunk_offsets);
  int rc = kern.launch(const_cast<void*>(a.k), const_cast<void*>(a.v), const_cast<void*>(a.L),
                       const_cast<float*>(a.gate_vectors), const_cast<float*>(a.chunk_stats),
                       const_cast<float*>(a.h0 ? a.h0 : a.gate_vectors), const_cast<int32_t*>(a.seqs.cu_seqlens),
                       const_cast<int32_t*>(a.seqs.chunk_offsets), seg_offsets, summ, kinds,
                       /*seq_len=*/a.seqs.seq_len, /*num_seqs=*/a.seqs.num_seqs, /*seg_chunks=*/a.seg_chunks,
                       /*num_segs=*/a.num_segs, /*has_h0=*/a.h0 != nullptr, /*cp_log_tol=*/a.cp_log_tol,
                       /*Ttot=*/a.seqs.total_tokens, /*H=*/a.num_qk_heads, /*HV=*/a.num_v_heads, /*NCG=*/ncg,
                       /*NST=*/a.h0 ? a.seqs.num_seqs : 1, /*NS1=*/a.seqs.num_seqs + 1, /*NSEG=*/a.num_segs, stream);
  FGDN_TRY(launch_result(rc, kern.name, rc ? kern.last_error() : nullptr));
  return run_cp_combine(a.seqs, seg_offsets, a.seg_chunks, a.num_segs, a.num_v_heads, a.chunk_stats, a.cp_log_tol,
                        summ, kinds, seg_states, /*reverse=*/0, stream);
}

fgdn_status run_cp_combine(const fgdn_seqs& s, const int32_t* seg_offsets, int seg_chunks, int num_segs, int HV,
                           const float* stats, float cp_log_tol, const float* summ, const int32_t* kinds,
                           float* seg_states, int reverse, cudaStream_t stream) {
  const int ncg = s.num_chunks > 0 ? s.num_chunks : 1;
  int32_t* any = const_cast<int32_t*>(kinds);   // a valid address for pointers read by varlen only
  int rc = fgdn_cp_combine_launch(const_cast<float*>(stats), s.cu_seqlens ? const_cast<int32_t*>(s.cu_seqlens) : any,
                                  s.chunk_offsets ? const_cast<int32_t*>(s.chunk_offsets) : any,
                                  seg_offsets ? const_cast<int32_t*>(seg_offsets) : any, const_cast<float*>(summ),
                                  const_cast<int32_t*>(kinds), seg_states, /*seq_len=*/s.seq_len,
                                  /*num_seqs=*/s.num_seqs, seg_chunks, num_segs, cp_log_tol, reverse, /*NCG=*/ncg, HV,
                                  /*NS1=*/s.num_seqs + 1, /*NSEG=*/num_segs, stream);
  return launch_result(rc, "cp_combine", rc ? fgdn_cp_combine_last_error() : nullptr);
}

fgdn_status run_bwd_cp_exact(const BwdCpExactLaunch& a, cudaStream_t stream) {
  using Fn = int (*)(void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, void*, int, int, int,
                     int, int, float, int, int, int, int, int, int, int, cudaStream_t);
  const Fn launch = a.dtype_fp16 ? fgdn_bwd_cp_summary_fp16_bfp32_launch : fgdn_bwd_cp_summary_bf16_bfp32_launch;
  const char* (*last_error)(void) =
      a.dtype_fp16 ? fgdn_bwd_cp_summary_fp16_bfp32_last_error : fgdn_bwd_cp_summary_bf16_bfp32_last_error;
  const fgdn_seqs& s = a.seqs;
  void* any = const_cast<float*>(a.gate_vectors);
  int rc = launch(const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.d_out), const_cast<void*>(a.L),
                  const_cast<float*>(a.gate_vectors), const_cast<float*>(a.chunk_stats),
                  a.d_final_state ? const_cast<float*>(a.d_final_state) : any,
                  s.cu_seqlens ? (void*)s.cu_seqlens : any, s.chunk_offsets ? (void*)s.chunk_offsets : any,
                  a.seg_offsets ? (void*)a.seg_offsets : any, a.summ, a.kinds, s.seq_len, s.num_seqs, a.seg_chunks,
                  a.num_segs, a.d_final_state != nullptr, a.cp_log_tol, s.total_tokens, a.num_qk_heads,
                  a.num_v_heads, s.num_chunks > 0 ? s.num_chunks : 1, a.d_final_state ? s.num_seqs : 1,
                  s.num_seqs + 1, a.num_segs, stream);
  FGDN_TRY(launch_result(rc, a.dtype_fp16 ? "bwd_cp_summary fp16" : "bwd_cp_summary bf16",
                         rc ? last_error() : nullptr));
  return run_cp_combine(s, a.seg_offsets, a.seg_chunks, a.num_segs, a.num_v_heads, a.chunk_stats, a.cp_log_tol,
                        a.summ, a.kinds, a.seg_dstates, /*reverse=*/1, stream);
}

}  // namespace flashgdn
