// Host launchers of kernels_tl/chunk_prep.py and kernels_tl/seq_plan.py, and the
// fgdn_chunk_prep entry point.
#include "chunk_prep_kernels.h"
#include "seq_plan_kernels.h"
#include "stages.h"

namespace flashgdn {
namespace {

using PrepLaunch = int (*)(void* k, void* beta, void* g, void* cu_seqlens, void* chunk_offsets, void* q, void* L,
                           void* stats, void* gvec, void* wy, int seq_len, int num_seqs, int use_l2norm, float scale,
                           int store_L, int Ttot,
                           int H, int HV, int NS1, int NC, cudaStream_t stream);
struct PrepKernel {
  PrepLaunch launch;
  const char* (*last_error)(void);
  const char* name;
};

// Same order as io_variant().
const PrepKernel kPrep[4] = {
    {fgdn_chunk_prep_bf16_bbf16_launch, fgdn_chunk_prep_bf16_bbf16_last_error, "chunk_prep bf16/bf16"},
    {fgdn_chunk_prep_bf16_bfp32_launch, fgdn_chunk_prep_bf16_bfp32_last_error, "chunk_prep bf16/fp32"},
    {fgdn_chunk_prep_fp16_bfp16_launch, fgdn_chunk_prep_fp16_bfp16_last_error, "chunk_prep fp16/fp16"},
    {fgdn_chunk_prep_fp16_bfp32_launch, fgdn_chunk_prep_fp16_bfp32_last_error, "chunk_prep fp16/fp32"},
};

// The same kernels without the Aw tile (kernels_tl/chunk_prep.py, store_aw=False): for an inference
// forward whose table only the v14 kernels read (run_chunk_prep's store_aw).
const PrepKernel kPrepAu[4] = {
    {fgdn_chunk_prep_au_bf16_bbf16_launch, fgdn_chunk_prep_au_bf16_bbf16_last_error, "chunk_prep_au bf16/bf16"},
    {fgdn_chunk_prep_au_bf16_bfp32_launch, fgdn_chunk_prep_au_bf16_bfp32_last_error, "chunk_prep_au bf16/fp32"},
    {fgdn_chunk_prep_au_fp16_bfp16_launch, fgdn_chunk_prep_au_fp16_bfp16_last_error, "chunk_prep_au fp16/fp16"},
    {fgdn_chunk_prep_au_fp16_bfp32_launch, fgdn_chunk_prep_au_fp16_bfp32_last_error, "chunk_prep_au fp16/fp32"},
};

}  // namespace

fgdn_status run_seq_plan(const int32_t* cu_seqlens, int32_t* chunk_offsets, int32_t* seg_offsets, int num_seqs,
                         int seg_chunks, cudaStream_t stream) {
  int rc = fgdn_seq_plan_launch(const_cast<int32_t*>(cu_seqlens), chunk_offsets, seg_offsets, num_seqs, seg_chunks,
                                /*NS1=*/num_seqs + 1, stream);
  return launch_result(rc, "seq_plan", rc ? fgdn_seq_plan_last_error() : nullptr);
}

fgdn_status run_chunk_prep(int variant, const fgdn_seqs& s, int H, int HV, int use_l2norm, float scale, const void* q,
                           const void* k, const void* beta, const float* g, void* L, float* stats, float* gvec,
                           cudaStream_t stream, bool store_aw) {
  if (s.total_tokens == 0 || s.num_chunks == 0) return ok();
  const PrepKernel& kern = store_aw ? kPrep[variant] : kPrepAu[variant];
  // q is read only with the in-kernel L2 norm; k stands in for it otherwise (never read)
  void* qp = const_cast<void*>(use_l2norm && q ? q : k);
  int rc = kern.launch(const_cast<void*>(k), const_cast<void*>(beta), const_cast<float*>(g),
                       const_cast<int32_t*>(s.cu_seqlens), const_cast<int32_t*>(s.chunk_offsets), qp,
                       /*L=*/L ? L : static_cast<void*>(gvec), stats, gvec,
                       /*wy=*/gvec,
                       /*seq_len=*/s.seq_len, /*num_seqs=*/s.num_seqs, /*use_l2norm=*/use_l2norm ? 1 : 0,
                       /*scale=*/scale, /*store_L=*/L != nullptr, /*Ttot=*/s.total_tokens, /*H=*/H, /*HV=*/HV, /*NS1=*/s.num_seqs + 1,
                       /*NC=*/s.num_chunks, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}

}  // namespace flashgdn

extern "C" fgdn_status fgdn_chunk_prep(const fgdn_chunk_prep_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  const int variant = io_variant(a->dtype, a->beta_dtype);
  FGDN_REQUIRE(variant >= 0, "unsupported dtype pair (dtype %d, beta_dtype %d): dtype must be bf16 or fp16 "
               "and beta_dtype equal to it or fp32", (int)a->dtype, (int)a->beta_dtype);
  FGDN_TRY(check_chunked_seqs(a->seqs));
  FGDN_TRY(check_heads(a->num_qk_heads, a->num_v_heads));
  FGDN_REQUIRE(a->k && a->beta && a->g && a->L && a->chunk_stats && a->gate_vectors,
               "k, beta, g, L, chunk_stats and gate_vectors must be non-NULL");
  FGDN_REQUIRE(!a->use_qk_l2norm || a->q, "q must be non-NULL with use_qk_l2norm");
  FGDN_REQUIRE(aligned16(a->k), "k must be 16-byte aligned (the kernel reads it with TMA)");
  FGDN_REQUIRE(aligned16(a->gate_vectors),
               "gate_vectors must be 16-byte aligned (vector stores here; the forward reads it with TMA)");
  FGDN_TRY(check_current_device());
  return run_chunk_prep(variant, a->seqs, a->num_qk_heads, a->num_v_heads, a->use_qk_l2norm, a->scale, a->q, a->k,
                        a->beta, a->g, a->L, a->chunk_stats, a->gate_vectors, stream);
}
