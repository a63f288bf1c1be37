#include "launch.h"

#include <cuda_runtime.h>

namespace flashgdn {

int io_variant(fgdn_dtype dtype, fgdn_dtype beta_dtype) {
  if (dtype == FGDN_BF16) return beta_dtype == FGDN_BF16 ? 0 : beta_dtype == FGDN_FP32 ? 1 : -1;
  if (dtype == FGDN_FP16) return beta_dtype == FGDN_FP16 ? 2 : beta_dtype == FGDN_FP32 ? 3 : -1;
  return -1;
}

fgdn_status check_current_device() {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess && err != cudaErrorInsufficientDriver && err != cudaErrorNoDevice) {
    return fail(FGDN_ERROR_CUDA, "cudaGetDevice: %s", cudaGetErrorString(err));
  }
  return fgdn_check_device(device);
}

fgdn_status check_seqs(const fgdn_seqs& s) {
  FGDN_REQUIRE(s.total_tokens >= 0, "total_tokens must be >= 0 (got %d)", s.total_tokens);
  FGDN_REQUIRE(s.num_seqs >= 1, "num_seqs must be >= 1 (got %d)", s.num_seqs);
  FGDN_REQUIRE(s.seq_len >= 0, "seq_len must be >= 0 (got %d)", s.seq_len);
  if (s.seq_len > 0) {
    FGDN_REQUIRE((long long)s.seq_len * s.num_seqs == s.total_tokens,
                 "num_seqs * seq_len (%d * %d) must equal total_tokens (%d)", s.num_seqs, s.seq_len,
                 s.total_tokens);
  } else if (s.total_tokens > 0) {
    FGDN_REQUIRE(s.cu_seqlens != nullptr, "varlen (seq_len == 0) needs cu_seqlens");
  }
  return FGDN_SUCCESS;
}

fgdn_status check_chunked_seqs(const fgdn_seqs& s) {
  FGDN_TRY(check_seqs(s));
  FGDN_REQUIRE(s.seq_len > 0 || s.chunk_offsets != nullptr, "varlen (seq_len == 0) needs chunk_offsets");
  FGDN_REQUIRE(s.num_chunks >= (s.seq_len > 0 ? s.num_seqs * ((s.seq_len + 63) / 64) : 0),
               "num_chunks (%d) is smaller than the number of chunks", s.num_chunks);
  return FGDN_SUCCESS;
}

fgdn_status check_heads(int H, int HV) {
  FGDN_REQUIRE(H >= 1 && HV >= 1 && HV % H == 0, "num_v_heads (%d) must be a positive multiple of num_qk_heads (%d)",
               HV, H);
  return FGDN_SUCCESS;
}

fgdn_status launch_result(int rc, const char* kernel, const char* message) {
  if (rc == 0) return ok();
  return fail(FGDN_ERROR_CUDA, "%s: %s", kernel, message ? message : "launch failed");
}

}  // namespace flashgdn
