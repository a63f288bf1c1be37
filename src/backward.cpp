// Host launchers of kernels_tl/bwd_states.py and kernels_tl/bwd_dstates.py, and the
// fgdn_backward_states / fgdn_backward_dstates entry points.
#include "bwd_dstates_kernels.h"
#include "bwd_states_kernels.h"
#include "stages.h"

namespace flashgdn {
namespace {

using StatesLaunch = int (*)(void* k, void* v, void* L, void* beta, void* rk, void* gvec, void* h0, void* cu_seqlens,
                             void* chunk_offsets, void* hsT, void* vnew, int seq_len, int num_seqs, int has_h0,
                             int has_norm, int Ttot, int H, int HV, int NRT, int NCG, int NST, int NS1,
                             cudaStream_t stream);
using DStatesLaunch = int (*)(void* q, void* k, void* dout, void* L, void* beta, void* rq, void* rk, void* gvec,
                              void* dht, void* cu_seqlens, void* chunk_offsets, void* dhsT, void* dvnew, void* dh0,
                              int seq_len, int num_seqs, int has_dht, int store_dh0, int has_norm, float scale,
                              int Ttot, int H, int HV, int NRT, int NCG, int NST, int NS1, cudaStream_t stream);

template <typename Fn>
struct Kernel {
  Fn launch;
  const char* (*last_error)(void);
  const char* name;
};

// Indexed by dtype: 0 = bf16, 1 = fp16.
const Kernel<StatesLaunch> kStates[2] = {
    {fgdn_bwd_states_bf16_bfp32_launch, fgdn_bwd_states_bf16_bfp32_last_error, "bwd_states bf16"},
    {fgdn_bwd_states_fp16_bfp32_launch, fgdn_bwd_states_fp16_bfp32_last_error, "bwd_states fp16"},
};
const Kernel<DStatesLaunch> kDStates[2] = {
    {fgdn_bwd_dstates_bf16_bfp32_launch, fgdn_bwd_dstates_bf16_bfp32_last_error, "bwd_dstates bf16"},
    {fgdn_bwd_dstates_fp16_bfp32_launch, fgdn_bwd_dstates_fp16_bfp32_last_error, "bwd_dstates fp16"},
};

fgdn_status check_common(fgdn_dtype dtype, const fgdn_seqs& s, int H, int HV) {
  FGDN_REQUIRE(dtype == FGDN_BF16 || dtype == FGDN_FP16, "dtype must be bf16 or fp16 (got %d)", (int)dtype);
  FGDN_TRY(check_chunked_seqs(s));
  FGDN_TRY(check_heads(H, HV));
  return check_current_device();
}

// Uniform lengths: the kernels compute sequence bounds arithmetically and never read
// cu_seqlens / chunk_offsets; they still get a valid device address.
void* seq_ptr(const int32_t* p, const float* fallback) {
  return p ? static_cast<void*>(const_cast<int32_t*>(p)) : static_cast<void*>(const_cast<float*>(fallback));
}

}  // namespace
}  // namespace flashgdn

extern "C" fgdn_status fgdn_backward_states(const fgdn_backward_states_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  FGDN_TRY(check_common(a->dtype, a->seqs, a->num_qk_heads, a->num_v_heads));
  FGDN_REQUIRE(a->k && a->v && a->L && a->beta && a->gate_vectors && a->chunk_states_t && a->v_new,
               "k, v, L, beta, gate_vectors, chunk_states_t and v_new must be non-NULL");
  if (a->seqs.total_tokens == 0 || a->seqs.num_chunks == 0) return ok();
  const auto& kern = kStates[a->dtype == FGDN_BF16 ? 0 : 1];
  const fgdn_seqs& s = a->seqs;
  void* h0 = const_cast<float*>(a->initial_state ? a->initial_state : a->gate_vectors);  // never read without h0
  const bool norm = a->k_norm_factor != nullptr;
  float* rk = const_cast<float*>(norm ? a->k_norm_factor : a->gate_vectors);
  int rc = kern.launch(const_cast<void*>(a->k), const_cast<void*>(a->v), const_cast<void*>(a->L),
                       const_cast<float*>(a->beta), rk, const_cast<float*>(a->gate_vectors), h0,
                       seq_ptr(s.cu_seqlens, a->gate_vectors), seq_ptr(s.chunk_offsets, a->gate_vectors),
                       a->chunk_states_t, a->v_new, s.seq_len, s.num_seqs, a->initial_state ? 1 : 0, norm ? 1 : 0,
                       s.total_tokens, a->num_qk_heads, a->num_v_heads, norm ? s.total_tokens : 1, s.num_chunks,
                       a->initial_state ? s.num_seqs : 1, s.num_seqs + 1, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}

extern "C" fgdn_status fgdn_backward_dstates(const fgdn_backward_dstates_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  FGDN_TRY(check_common(a->dtype, a->seqs, a->num_qk_heads, a->num_v_heads));
  const bool have_tokens = a->seqs.total_tokens > 0 && a->seqs.num_chunks > 0;
  FGDN_REQUIRE((a->q_norm_factor == nullptr) == (a->k_norm_factor == nullptr),
               "q_norm_factor and k_norm_factor must be both given or both NULL");
  FGDN_REQUIRE(!have_tokens || (a->q && a->k && a->d_out && a->L && a->beta && a->gate_vectors &&
                                a->chunk_dstates_t && a->dv_new),
               "q, k, d_out, L, beta, gate_vectors, chunk_dstates_t and dv_new must be non-NULL");
  const fgdn_seqs& s = a->seqs;
  if (!have_tokens) {
    // Every sequence is empty: d(initial state) = d(final state).
    if (!a->d_initial_state) return ok();
    const size_t bytes = (size_t)s.num_seqs * a->num_v_heads * 128 * 128 * sizeof(float);
    cudaError_t err = a->d_final_state
                          ? cudaMemcpyAsync(a->d_initial_state, a->d_final_state, bytes, cudaMemcpyDeviceToDevice, stream)
                          : cudaMemsetAsync(a->d_initial_state, 0, bytes, stream);
    if (err != cudaSuccess) return fail(FGDN_ERROR_CUDA, "dh0 copy: %s", cudaGetErrorString(err));
    return ok();
  }
  const auto& kern = kDStates[a->dtype == FGDN_BF16 ? 0 : 1];
  // Without d(final state) or without dh0 the kernel still needs a valid pointer it never touches.
  float* spare = const_cast<float*>(a->gate_vectors);
  const bool io_state = a->d_final_state || a->d_initial_state;
  const bool norm = a->q_norm_factor != nullptr;
  float* rq = norm ? const_cast<float*>(a->q_norm_factor) : spare;
  float* rk = norm ? const_cast<float*>(a->k_norm_factor) : spare;
  int rc = kern.launch(const_cast<void*>(a->q), const_cast<void*>(a->k), const_cast<void*>(a->d_out),
                       const_cast<void*>(a->L), const_cast<float*>(a->beta), rq, rk,
                       const_cast<float*>(a->gate_vectors), a->d_final_state ? const_cast<float*>(a->d_final_state) : spare,
                       seq_ptr(s.cu_seqlens, a->gate_vectors), seq_ptr(s.chunk_offsets, a->gate_vectors),
                       a->chunk_dstates_t, a->dv_new, a->d_initial_state ? a->d_initial_state : spare, s.seq_len,
                       s.num_seqs, a->d_final_state ? 1 : 0, a->d_initial_state ? 1 : 0, norm ? 1 : 0, a->scale,
                       s.total_tokens, a->num_qk_heads, a->num_v_heads, norm ? s.total_tokens : 1, s.num_chunks,
                       io_state ? s.num_seqs : 1, s.num_seqs + 1, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}
