// Host launchers of the exact intra-card CP correction (tool (a), docs/context-parallelism.md):
// kernels_tl/cp_summary.py (pass 1: each needed segment's F and M) and kernels_tl/cp_combine.py
// (pass 2: the true incoming state of every segment that cannot warm up). The fused forward then
// starts those segments at their own first chunk from seg_states.
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
  rc = fgdn_cp_combine_launch(const_cast<float*>(a.chunk_stats), const_cast<int32_t*>(a.seqs.cu_seqlens),
                              const_cast<int32_t*>(a.seqs.chunk_offsets), seg_offsets, summ, kinds, seg_states,
                              /*seq_len=*/a.seqs.seq_len, /*num_seqs=*/a.seqs.num_seqs, /*seg_chunks=*/a.seg_chunks,
                              /*num_segs=*/a.num_segs, /*cp_log_tol=*/a.cp_log_tol, /*NCG=*/ncg,
                              /*HV=*/a.num_v_heads, /*NS1=*/a.seqs.num_seqs + 1, /*NSEG=*/a.num_segs, stream);
  return launch_result(rc, "cp_combine", rc ? fgdn_cp_combine_last_error() : nullptr);
}

}  // namespace flashgdn
