// Host launcher of kernels_tl/chunk_prep.py.
#include "chunk_prep_kernels.h"
#include "launch.h"

namespace flashgdn {
namespace {

using PrepLaunch = int (*)(void* k, void* beta, void* g, void* cu_seqlens, void* chunk_offsets, void* L,
                           void* stats, int seq_len, int num_seqs, int use_l2norm, int Ttot, int H, int HV,
                           int NS1, int NC, cudaStream_t stream);
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

}  // namespace
}  // namespace flashgdn

extern "C" fgdn_status fgdn_chunk_prep(const fgdn_chunk_prep_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  const int variant = io_variant(a->dtype, a->beta_dtype);
  FGDN_REQUIRE(variant >= 0, "unsupported dtype pair (dtype %d, beta_dtype %d): dtype must be bf16 or fp16 "
               "and beta_dtype equal to it or fp32", (int)a->dtype, (int)a->beta_dtype);
  FGDN_TRY(check_seqs(a->seqs));
  FGDN_REQUIRE(a->num_qk_heads >= 1 && a->num_v_heads >= 1 && a->num_v_heads % a->num_qk_heads == 0,
               "num_v_heads (%d) must be a positive multiple of num_qk_heads (%d)", a->num_v_heads,
               a->num_qk_heads);
  FGDN_REQUIRE(a->k && a->beta && a->g && a->L && a->chunk_stats, "k, beta, g, L and chunk_stats must be non-NULL");
  FGDN_TRY(check_current_device());
  if (a->seqs.total_tokens == 0 || a->seqs.num_chunks == 0) return ok();
  const PrepKernel& kern = kPrep[variant];
  int rc = kern.launch(const_cast<void*>(a->k), const_cast<void*>(a->beta), const_cast<float*>(a->g),
                       const_cast<int32_t*>(a->seqs.cu_seqlens), const_cast<int32_t*>(a->seqs.chunk_offsets),
                       a->L, a->chunk_stats,
                       /*seq_len=*/a->seqs.seq_len, /*num_seqs=*/a->seqs.num_seqs,
                       /*use_l2norm=*/a->use_qk_l2norm ? 1 : 0,
                       /*Ttot=*/a->seqs.total_tokens, /*H=*/a->num_qk_heads, /*HV=*/a->num_v_heads,
                       /*NS1=*/a->seqs.num_seqs + 1, /*NC=*/a->seqs.num_chunks, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}
