// Host launchers of kernels_tl/bwd_dstates.py and bwd_local.py, and the fgdn_backward_dstates /
// fgdn_backward_chunk_grads entry points (the backward's state pass is fgdn_forward with
// chunk_states_t).
#include <cmath>

#include "bwd_dstates_kernels.h"
#include "bwd_local_kernels.h"
#include "stages.h"

namespace flashgdn {
namespace {

using DStatesLaunch = int (*)(void* q, void* k, void* dout, void* wy, void* gvec, void* stats, void* dht,
                              void* cu_seqlens, void* chunk_offsets, void* seg_offsets, void* dhsT, void* dvnew,
                              void* dh0, void* seg_dstates, int seq_len, int num_seqs, int seg_chunks,
                              int num_segs, int has_dht, int store_dh0, float cp_log_tol, int exact_cp, int Ttot,
                              int H, int HV, int NCG, int NST, int NS1, int NSEG, cudaStream_t stream);

using LocalLaunch = int (*)(void* q, void* k, void* v, void* dout, void* L, void* beta, void* rq, void* rk,
                            void* gvec, void* hsT, void* dhsT, void* dvnew, void* dht, void* h0, void* cu_seqlens,
                            void* chunk_offsets, void* dq, void* dk, void* dv, void* dg, void* dbeta, int seq_len,
                            int num_seqs, int has_norm, int has_dht, int has_h0, int gva_sum, float scale, int Ttot,
                            int H, int HV, int NRT, int NCG, int NST, int NH0, int NS1, int NDH, cudaStream_t stream);

template <typename Fn>
struct Kernel {
  Fn launch;
  const char* (*last_error)(void);
  const char* name;
};

// Indexed by dtype: 0 = bf16, 1 = fp16.
const Kernel<DStatesLaunch> kDStates[2] = {
    {fgdn_bwd_dstates_bf16_bfp32_launch, fgdn_bwd_dstates_bf16_bfp32_last_error, "bwd_dstates bf16"},
    {fgdn_bwd_dstates_fp16_bfp32_launch, fgdn_bwd_dstates_fp16_bfp32_last_error, "bwd_dstates fp16"},
};
// The update's w term from Au (kernels_tl/bwd_dstates.py, au=True): with FLASHGDN_FUSED_FWD_V14=1
// (opt-in, not yet run on a GPU; use_fused_fwd_v14 in stages.h).
const Kernel<DStatesLaunch> kDStates14[2] = {
    {fgdn_bwd_dstates_v14_bf16_bfp32_launch, fgdn_bwd_dstates_v14_bf16_bfp32_last_error, "bwd_dstates_v14 bf16"},
    {fgdn_bwd_dstates_v14_fp16_bfp32_launch, fgdn_bwd_dstates_v14_fp16_bfp32_last_error, "bwd_dstates_v14 fp16"},
};

// Full chunks, then each sequence's partial last chunk (a separate kernel: the hot one carries
// none of the partial-chunk code).
const Kernel<LocalLaunch> kLocal[2] = {
    {fgdn_bwd_local_bf16_bfp32_launch, fgdn_bwd_local_bf16_bfp32_last_error, "bwd_local bf16"},
    {fgdn_bwd_local_fp16_bfp32_launch, fgdn_bwd_local_fp16_bfp32_last_error, "bwd_local fp16"},
};
const Kernel<LocalLaunch> kLocalLast[2] = {
    {fgdn_bwd_local_last_bf16_bfp32_launch, fgdn_bwd_local_last_bf16_bfp32_last_error, "bwd_local_last bf16"},
    {fgdn_bwd_local_last_fp16_bfp32_launch, fgdn_bwd_local_last_fp16_bfp32_last_error, "bwd_local_last fp16"},
};

fgdn_status check_common(fgdn_dtype dtype, const fgdn_seqs& s, int H, int HV) {
  FGDN_REQUIRE(dtype == FGDN_BF16 || dtype == FGDN_FP16, "dtype must be bf16 or fp16 (got %d)", (int)dtype);
  FGDN_TRY(check_chunked_seqs(s));
  FGDN_TRY(check_heads(H, HV));
  return check_current_device();
}

// The reverse pass's workspace: the exact CP correction's scratch (at 0), then, for varlen calls
// that pass no seg_offsets, the chunk and segment offsets seq_plan makes.
struct DStatesWorkspace {
  size_t chunk_offsets_off = 0, seg_offsets_off = 0, bytes = 0;
};

DStatesWorkspace dstates_workspace(const fgdn_backward_dstates_args& a, const CpSplit& cp) {
  DStatesWorkspace w;
  w.bytes = cp.bytes;
  if (a.seqs.seq_len == 0 && a.seg_offsets == nullptr) {
    const size_t offsets_bytes = align256((size_t)(a.seqs.num_seqs + 1) * sizeof(int32_t));
    w.chunk_offsets_off = align256(w.bytes);
    w.seg_offsets_off = w.chunk_offsets_off + offsets_bytes;
    w.bytes = w.seg_offsets_off + offsets_bytes;
  }
  return w;
}

}  // namespace
}  // namespace flashgdn

extern "C" size_t fgdn_backward_dstates_workspace_size(const fgdn_backward_dstates_args* a) {
  using namespace flashgdn;
  if (a == nullptr) return 0;
  return dstates_workspace(*a, plan_cp_split(a->seqs, a->cp_segment_chunks, a->num_v_heads, a->cp_restart_only != 0))
      .bytes;
}

extern "C" fgdn_status fgdn_backward_dstates(const fgdn_backward_dstates_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  FGDN_TRY(check_common(a->dtype, a->seqs, a->num_qk_heads, a->num_v_heads));
  const bool have_tokens = a->seqs.total_tokens > 0 && a->seqs.num_chunks > 0;
  FGDN_REQUIRE(!have_tokens || (a->q && a->k && a->d_out && a->gate_vectors && a->chunk_dstates_t && a->dv_new),
               "q, k, d_out, gate_vectors, chunk_dstates_t and dv_new must be non-NULL");
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
  FGDN_REQUIRE(a->cp_segment_chunks >= 0, "cp_segment_chunks must be >= 0 (got %d)", a->cp_segment_chunks);
  FGDN_REQUIRE(a->cp_tolerance >= 0.f && a->cp_tolerance < 1.f, "cp_tolerance must be in [0, 1) (got %g)",
               (double)a->cp_tolerance);
  FGDN_REQUIRE(a->cp_segment_chunks == 0 || a->chunk_stats, "chunk_stats must be non-NULL with cp_segment_chunks > 0");
  const CpSplit plan = plan_cp_split(s, a->cp_segment_chunks, a->num_v_heads, a->cp_restart_only != 0);
  const int seg_chunks = plan.seg_chunks;
  const long long num_segs = plan.num_segs;
  const DStatesWorkspace wsp = dstates_workspace(*a, plan);
  const size_t ws_bytes = wsp.bytes;
  FGDN_REQUIRE(a->workspace_bytes >= ws_bytes, "workspace too small: %zu bytes, need %zu (fgdn_backward_dstates_workspace_size)",
               a->workspace_bytes, ws_bytes);
  FGDN_REQUIRE(ws_bytes == 0 || (a->workspace != nullptr && (reinterpret_cast<uintptr_t>(a->workspace) % 256) == 0),
               "workspace must be a non-NULL, 256-byte aligned device pointer");
  FGDN_REQUIRE(2 * num_segs <= 0x7fffffffLL, "too many CP segments (%lld)", num_segs);
  const float cp_log_tol = a->cp_tolerance > 0.f ? std::log(a->cp_tolerance) : -INFINITY;
  FGDN_REQUIRE(aligned16(a->q) && aligned16(a->k) && aligned16(a->d_out) && aligned16(a->gate_vectors) &&
                   aligned16(a->dv_new),
               "q, k, d_out, gate_vectors and dv_new must be 16-byte aligned (the kernel moves them with TMA)");
  const auto& kern = (use_fused_fwd_v14() ? kDStates14 : kDStates)[a->dtype == FGDN_BF16 ? 0 : 1];
  // Pointers the kernel touches only in some modes (stats, dht, dh0, varlen arrays, seg_dstates)
  // still have to be valid addresses.
  const void* any = a->gate_vectors;
  const bool io_state = a->d_final_state || a->d_initial_state;
  const int32_t* seg_offsets = a->seg_offsets;
  if (s.seq_len == 0 && seg_offsets == nullptr) {   // the same kernel fgdn_forward plans varlen with
    int32_t* chunk_offsets = reinterpret_cast<int32_t*>(static_cast<char*>(a->workspace) + wsp.chunk_offsets_off);
    int32_t* segs = reinterpret_cast<int32_t*>(static_cast<char*>(a->workspace) + wsp.seg_offsets_off);
    FGDN_TRY(run_seq_plan(s.cu_seqlens, chunk_offsets, segs, s.num_seqs, seg_chunks, stream));
    seg_offsets = segs;
  }
  float* seg_dstates = nullptr;
  if (plan.exact) {
    char* ws = static_cast<char*>(a->workspace);
    BwdCpExactLaunch x;
    x.dtype_fp16 = a->dtype == FGDN_FP16;
    x.seqs = s;
    x.seg_offsets = seg_offsets;
    x.seg_chunks = seg_chunks;
    x.num_segs = (int)num_segs;
    x.num_qk_heads = a->num_qk_heads;
    x.num_v_heads = a->num_v_heads;
    x.q = a->q;
    x.k = a->k;
    x.d_out = a->d_out;
    x.gate_vectors = a->gate_vectors;
    x.chunk_stats = a->chunk_stats;
    x.d_final_state = a->d_final_state;
    x.cp_log_tol = cp_log_tol;
    x.summ = reinterpret_cast<float*>(ws + plan.summ_off);
    x.kinds = reinterpret_cast<int32_t*>(ws + plan.kinds_off);
    x.seg_dstates = seg_dstates = reinterpret_cast<float*>(ws + plan.states_off);
    FGDN_TRY(run_bwd_cp_exact(x, stream));
  }
  int rc = kern.launch(const_cast<void*>(a->q), const_cast<void*>(a->k), const_cast<void*>(a->d_out),
                       // wy: the gated WY tiles at the end of the gate-vector table (input dtype)
                       const_cast<float*>(a->gate_vectors), const_cast<float*>(a->gate_vectors),
                       or_valid(a->chunk_stats, any), or_valid(a->d_final_state, any), or_valid(s.cu_seqlens, any),
                       or_valid(s.chunk_offsets, any), or_valid(seg_offsets, any), a->chunk_dstates_t, a->dv_new,
                       or_valid(a->d_initial_state, any), or_valid(seg_dstates, any),
                       s.seq_len, s.num_seqs, seg_chunks, (int)num_segs, a->d_final_state ? 1 : 0,
                       a->d_initial_state ? 1 : 0, cp_log_tol, /*exact_cp=*/seg_dstates != nullptr, s.total_tokens,
                       a->num_qk_heads, a->num_v_heads, s.num_chunks, io_state ? s.num_seqs : 1, s.num_seqs + 1,
                       /*NSEG=*/seg_dstates ? (int)num_segs : 1, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}

extern "C" fgdn_status fgdn_backward_chunk_grads(const fgdn_backward_chunk_grads_args* a, cudaStream_t stream) {
  using namespace flashgdn;
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  FGDN_TRY(check_common(a->dtype, a->seqs, a->num_qk_heads, a->num_v_heads));
  FGDN_REQUIRE((a->q_norm_factor == nullptr) == (a->k_norm_factor == nullptr),
               "q_norm_factor and k_norm_factor must be both given or both NULL");
  if (a->seqs.total_tokens == 0 || a->seqs.num_chunks == 0) return ok();
  FGDN_REQUIRE(a->q && a->k && a->v && a->d_out && a->L && a->beta && a->gate_vectors && a->chunk_states_t &&
                   a->chunk_dstates_t && a->dv_new && a->dq && a->dk && a->dv && a->dg && a->dbeta,
               "every tensor except the norm factors must be non-NULL");
  const int dt = a->dtype == FGDN_BF16 ? 0 : 1;
  const fgdn_seqs& s = a->seqs;
  // bwd_local's grid is 1-D over (chunk, value head)
  FGDN_REQUIRE((long long)s.num_chunks * a->num_v_heads <= 0x7fffffffLL,
               "num_chunks * num_v_heads (%lld) must be < 2^31", (long long)s.num_chunks * a->num_v_heads);
  const bool norm = a->q_norm_factor != nullptr;
  const void* any = a->gate_vectors;   // for pointers read in some modes only (norm, varlen, dht, h0)
  // GVA sums: value heads add into their q/k head's rows (float atomics) of zeroed buffers
  const bool gva_sum = a->gva_sum != 0 && a->num_v_heads != a->num_qk_heads;
  const int dqk_heads = gva_sum ? a->num_qk_heads : a->num_v_heads;
  if (gva_sum) {
    const size_t bytes = (size_t)s.total_tokens * dqk_heads * 128 * sizeof(float);
    for (float* buf : {a->dq, a->dk}) {
      cudaError_t err = cudaMemsetAsync(buf, 0, bytes, stream);
      if (err != cudaSuccess) return fail(FGDN_ERROR_CUDA, "zeroing dq / dk: %s", cudaGetErrorString(err));
    }
  }
  // uniform lengths that are a multiple of 64 have no partial chunk
  const bool any_partial = s.seq_len == 0 || s.seq_len % 64 != 0;
  for (const auto* kern : {&kLocal[dt], any_partial ? &kLocalLast[dt] : nullptr}) {
    if (!kern) continue;
    int rc = kern->launch(const_cast<void*>(a->q), const_cast<void*>(a->k), const_cast<void*>(a->v),
                          const_cast<void*>(a->d_out), const_cast<void*>(a->L), const_cast<float*>(a->beta),
                          or_valid(a->q_norm_factor, any), or_valid(a->k_norm_factor, any),
                          const_cast<float*>(a->gate_vectors), const_cast<void*>(a->chunk_states_t),
                          const_cast<void*>(a->chunk_dstates_t), const_cast<void*>(a->dv_new),
                          or_valid(a->d_final_state, any), or_valid(a->initial_state, any),
                          or_valid(s.cu_seqlens, any), or_valid(s.chunk_offsets, any), a->dq,
                          a->dk, a->dv, a->dg, a->dbeta, s.seq_len, s.num_seqs, norm ? 1 : 0,
                          a->d_final_state ? 1 : 0, a->initial_state ? 1 : 0, gva_sum ? 1 : 0, a->scale,
                          s.total_tokens, a->num_qk_heads, a->num_v_heads, norm ? s.total_tokens : 1, s.num_chunks,
                          a->d_final_state ? s.num_seqs : 1, a->initial_state ? s.num_seqs : 1, s.num_seqs + 1,
                          dqk_heads, stream);
    FGDN_TRY(launch_result(rc, kern->name, rc ? kern->last_error() : nullptr));
  }
  return ok();
}
