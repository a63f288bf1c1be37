// fgdn_forward: workspace planning and the launch sequence of the forward pass.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "fused_fwd_kernels.h"
#include "stages.h"

namespace flashgdn {
namespace {

using FwdLaunchFn = int (*)(void* q, void* k, void* v, void* wy, void* gvec, void* stats, void* h0, void* cu_seqlens,
                            void* chunk_offsets, void* seg_offsets, void* o, void* ht, void* hsT,
                            void* seg_states, int seq_len, int num_seqs, int seg_chunks, int num_segs, int has_h0,
                            int store_final, int store_states, float cp_log_tol, int exact_cp, int Ttot, int H,
                            int HV, int NCG, int NST, int NS1, int NCS, int NSEG, cudaStream_t stream);
struct FwdKernel {
  FwdLaunchFn launch;
  const char* (*last_error)(void);
  const char* name;
};

// [mode][dtype: 0 = bf16, 1 = fp16]; mode 0 = o (inference), 1 = chunk states only (the
// backward's state pass: no q, P~ or o work, states stored by TMA), 2 = o and chunk states.
// beta's dtype does not matter here (chunk_prep folds beta into the gate vectors). Each mode has
// a kernel of its own so that the inference one carries none of the state-storing code.
const FwdKernel kFwd[3][2] = {
    {{fgdn_fused_fwd_bf16_bfp32_launch, fgdn_fused_fwd_bf16_bfp32_last_error, "fused_fwd bf16"},
     {fgdn_fused_fwd_fp16_bfp32_launch, fgdn_fused_fwd_fp16_bfp32_last_error, "fused_fwd fp16"}},
    {{fgdn_fused_fwd_states_bf16_bfp32_launch, fgdn_fused_fwd_states_bf16_bfp32_last_error, "fused_fwd_states bf16"},
     {fgdn_fused_fwd_states_fp16_bfp32_launch, fgdn_fused_fwd_states_fp16_bfp32_last_error, "fused_fwd_states fp16"}},
    {{fgdn_fused_fwd_o_states_bf16_bfp32_launch, fgdn_fused_fwd_o_states_bf16_bfp32_last_error, "fused_fwd_o_states bf16"},
     {fgdn_fused_fwd_o_states_fp16_bfp32_launch, fgdn_fused_fwd_o_states_fp16_bfp32_last_error, "fused_fwd_o_states fp16"}},
};

// fused_fwd3 (three warpgroups, v13 since 2026-12-08; kernels_tl/fused_fwd.py): the inference
// kernel (mode 0) since 2026-12-07 - it passes the forward suite on an H100 and measures faster than
// v11 (docs/perf-notes.md). FLASHGDN_FUSED_FWD_3WG=0 in the environment (read once per process) selects
// v11, the two-warpgroup kernel the other modes use, e.g. to bisect a suspected kernel fault.
const FwdKernel kFwd3[2] = {
    {fgdn_fused_fwd3_bf16_bfp32_launch, fgdn_fused_fwd3_bf16_bfp32_last_error, "fused_fwd3 bf16"},
    {fgdn_fused_fwd3_fp16_bfp32_launch, fgdn_fused_fwd3_fp16_bfp32_last_error, "fused_fwd3 fp16"},
};

// True when the environment variable `name` is exactly `value` (the kernel switches below read
// theirs once per process).
bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e != nullptr && std::strcmp(e, value) == 0;
}

bool use_fused_fwd3() {
  static const bool on = !env_is("FLASHGDN_FUSED_FWD_3WG", "0");
  return on;
}

// fused_fwd_v14 (two warpgroups, kernels_tl/fused_fwd.py): v13's successor, written 2026-12-08
// without a device to test or time it on, so opt-in until it has passed the forward suite and
// measured faster: FLASHGDN_FUSED_FWD_V14=1 in the environment (read once per process) selects it
// for the inference forward, ahead of FLASHGDN_FUSED_FWD_3WG (use_fused_fwd_v14, stages.h), with its
// exact CP pass 1 (cp_summary_v14) and a chunk_prep without the Aw tile, which neither reads; and
// the same formulation in the backward's state pass (below) and reverse pass (backward.cpp).
const FwdKernel kFwd14[2] = {
    {fgdn_fused_fwd_v14_bf16_bfp32_launch, fgdn_fused_fwd_v14_bf16_bfp32_last_error, "fused_fwd_v14 bf16"},
    {fgdn_fused_fwd_v14_fp16_bfp32_launch, fgdn_fused_fwd_v14_fp16_bfp32_last_error, "fused_fwd_v14 fp16"},
};
// and the backward's state pass (mode 1) on v14's state loop: one warpgroup, two CTAs an SM
const FwdKernel kFwdStates14[2] = {
    {fgdn_fused_fwd_states_v14_bf16_bfp32_launch, fgdn_fused_fwd_states_v14_bf16_bfp32_last_error,
     "fused_fwd_states_v14 bf16"},
    {fgdn_fused_fwd_states_v14_fp16_bfp32_launch, fgdn_fused_fwd_states_v14_fp16_bfp32_last_error,
     "fused_fwd_states_v14 fp16"},
};

// Where each scratch array lives in the caller's workspace, and the launch bounds.
struct Plan {
  CpSplit cp;           // the CP split; its exact-correction scratch starts at cp_off
  int num_chunks = 0;   // chunk grid (exact for uniform lengths, an upper bound for varlen)
  size_t stats_off = 0, gvec_off = 0, chunk_offsets_off = 0, seg_offsets_off = 0, cp_off = 0, bytes = 0;
};

Plan make_plan(const fgdn_forward_args& a) {
  Plan p;
  const fgdn_seqs& s = a.seqs;
  const long long N = s.num_seqs;
  p.cp = plan_cp_split(s, a.cp_segment_chunks, a.num_v_heads, a.cp_restart_only != 0);
  p.num_chunks = (int)(s.seq_len > 0 ? N * ((s.seq_len + 63) / 64) : (long long)s.total_tokens / 64 + N);
  size_t off = 0;
  if (!a.prep_L) {   // chunk_prep's outputs live here unless the caller supplies them (no L: the
                     // forward reads the gated WY factors in the gate-vector table instead)
    p.stats_off = off;
    off = align256(off + (size_t)(p.num_chunks > 0 ? p.num_chunks : 1) * a.num_v_heads * 2 * sizeof(float));
    p.gvec_off = off;   // FGDN_GATE_VECTOR_ROWS rows of 64 fp32 per chunk and value head
    off = align256(off + (size_t)(p.num_chunks > 0 ? p.num_chunks : 1) * a.num_v_heads * FGDN_GATE_VECTOR_ROWS *
                             64 * sizeof(float));
  }
  if (s.seq_len == 0) {
    p.chunk_offsets_off = off;
    off = align256(off + (size_t)(N + 1) * sizeof(int32_t));
    p.seg_offsets_off = off;
    off = align256(off + (size_t)(N + 1) * sizeof(int32_t));
  }
  p.cp_off = off;
  p.bytes = off + p.cp.bytes;
  return p;
}

fgdn_status check_forward_args(const fgdn_forward_args* a, int* variant) {
  FGDN_REQUIRE(a != nullptr, "args is NULL");
  *variant = io_variant(a->dtype, a->beta_dtype);
  FGDN_REQUIRE(*variant >= 0, "unsupported dtype pair (dtype %d, beta_dtype %d): dtype must be bf16 or fp16 and "
               "beta_dtype equal to it or fp32", (int)a->dtype, (int)a->beta_dtype);
  FGDN_TRY(check_seqs(a->seqs));
  FGDN_TRY(check_heads(a->num_qk_heads, a->num_v_heads));
  FGDN_REQUIRE(a->num_v_heads <= 65535, "num_v_heads (%d) must be <= 65535", a->num_v_heads);
  FGDN_REQUIRE(std::isfinite(a->scale), "scale must be finite");
  FGDN_REQUIRE(a->cp_segment_chunks >= 0, "cp_segment_chunks must be >= 0 (got %d)", a->cp_segment_chunks);
  FGDN_REQUIRE(a->cp_tolerance >= 0.f && a->cp_tolerance < 1.f, "cp_tolerance must be in [0, 1) (got %g)",
               (double)a->cp_tolerance);
  FGDN_REQUIRE(a->q && a->k && a->v && a->g && a->beta, "q, k, v, g and beta must be non-NULL");
  FGDN_REQUIRE(a->o || a->chunk_states_t, "o must be non-NULL (it may be NULL only when chunk_states_t is given)");
  FGDN_REQUIRE(aligned16(a->q) && aligned16(a->k) && aligned16(a->v) && aligned16(a->o) &&
                   aligned16(a->chunk_states_t),
               "q, k, v, o and chunk_states_t must be 16-byte aligned (the kernels read and write them with TMA)");
  const bool any_prep = a->prep_L || a->prep_chunk_stats || a->prep_gate_vectors;
  const bool all_prep = a->prep_L && a->prep_chunk_stats && a->prep_gate_vectors;
  FGDN_REQUIRE(!any_prep || all_prep, "prep_L, prep_chunk_stats and prep_gate_vectors: all three or none");
  FGDN_REQUIRE(!all_prep || aligned16(a->prep_gate_vectors),
               "prep_gate_vectors must be 16-byte aligned (read with TMA)");
  return FGDN_SUCCESS;
}

}  // namespace

bool use_fused_fwd_v14() {
  static const bool on = env_is("FLASHGDN_FUSED_FWD_V14", "1");
  return on;
}

fgdn_status run_fused_fwd(const FusedFwdLaunch& a, cudaStream_t stream) {
  // io_variant(): 0, 1 = bf16 inputs, 2, 3 = fp16
  const int mode = a.chunk_states_t == nullptr ? 0 : (a.o == nullptr ? 1 : 2);
  const int dt = a.variant >= 2 ? 1 : 0;
  const FwdKernel& kern = mode == 1 && use_fused_fwd_v14() ? kFwdStates14[dt]
                          : mode != 0                       ? kFwd[mode][dt]
                          : use_fused_fwd_v14()             ? kFwd14[dt]
                          : use_fused_fwd3()                ? kFwd3[dt]
                                                            : kFwd[0][dt];
  const int nst = a.seqs.num_seqs;
  // h0, ht, varlen arrays, o (mode 1), hsT (mode 0), seg_states: read or written only in some modes
  const void* any = a.gate_vectors;
  int rc = kern.launch(const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.v),
                       // wy: the gated WY factor tiles at the end of the gate-vector table (the
                       // kernel views that memory in the input dtype)
                       const_cast<float*>(a.gate_vectors), const_cast<float*>(a.gate_vectors),
                       const_cast<float*>(a.chunk_stats), or_valid(a.h0, any), or_valid(a.seqs.cu_seqlens, any),
                       or_valid(a.seqs.chunk_offsets, any), or_valid(a.seg_offsets, any), or_valid(a.o, any),
                       or_valid(a.ht, any), or_valid(a.chunk_states_t, any), or_valid(a.seg_states, any),
                       /*seq_len=*/a.seqs.seq_len, /*num_seqs=*/a.seqs.num_seqs, /*seg_chunks=*/a.seg_chunks,
                       /*num_segs=*/a.num_segs, /*has_h0=*/a.h0 != nullptr, /*store_final=*/a.ht != nullptr,
                       /*store_states=*/a.chunk_states_t != nullptr,
                       /*cp_log_tol=*/a.cp_log_tol, /*exact_cp=*/a.seg_states != nullptr, /*Ttot=*/a.seqs.total_tokens, /*H=*/a.num_qk_heads, /*HV=*/a.num_v_heads,
                       /*NCG=*/a.seqs.num_chunks > 0 ? a.seqs.num_chunks : 1, /*NST=*/nst,
                       /*NS1=*/a.seqs.num_seqs + 1,
                       /*NCS=*/a.chunk_states_t && a.seqs.num_chunks > 0 ? a.seqs.num_chunks : 1,
                       /*NSEG=*/a.seg_states ? a.num_segs : 1, stream);
  return launch_result(rc, kern.name, rc ? kern.last_error() : nullptr);
}

}  // namespace flashgdn

extern "C" size_t fgdn_forward_workspace_size(const fgdn_forward_args* a) {
  if (a == nullptr) return 0;
  return flashgdn::make_plan(*a).bytes;
}

extern "C" fgdn_status fgdn_forward(const fgdn_forward_args* a, void* workspace, size_t workspace_bytes,
                                    cudaStream_t stream) {
  using namespace flashgdn;
  int variant = -1;
  FGDN_TRY(check_forward_args(a, &variant));
  const Plan plan = make_plan(*a);
  FGDN_REQUIRE(workspace_bytes >= plan.bytes, "workspace too small: %zu bytes, need %zu", workspace_bytes, plan.bytes);
  FGDN_REQUIRE(workspace != nullptr && (reinterpret_cast<uintptr_t>(workspace) % 256) == 0,
               "workspace must be a non-NULL, 256-byte aligned device pointer");
  FGDN_TRY(check_current_device());

  const fgdn_seqs& s = a->seqs;
  const size_t state_bytes = (size_t)s.num_seqs * a->num_v_heads * 128 * 128 * sizeof(float);
  if (s.total_tokens == 0) {  // every sequence is empty: final state = initial state (or zero)
    if (a->final_state) {
      cudaError_t err = a->initial_state
                            ? cudaMemcpyAsync(a->final_state, a->initial_state, state_bytes, cudaMemcpyDeviceToDevice, stream)
                            : cudaMemsetAsync(a->final_state, 0, state_bytes, stream);
      if (err != cudaSuccess) return fail(FGDN_ERROR_CUDA, "final state copy: %s", cudaGetErrorString(err));
    }
    return ok();
  }

  char* ws = static_cast<char*>(workspace);
  fgdn_seqs seqs = s;
  seqs.num_chunks = plan.num_chunks;
  const int32_t* seg_offsets = nullptr;
  if (s.seq_len == 0) {
    int32_t* chunk_offsets = reinterpret_cast<int32_t*>(ws + plan.chunk_offsets_off);
    int32_t* segs = reinterpret_cast<int32_t*>(ws + plan.seg_offsets_off);
    FGDN_TRY(run_seq_plan(s.cu_seqlens, chunk_offsets, segs, s.num_seqs, plan.cp.seg_chunks, stream));
    seqs.chunk_offsets = chunk_offsets;
    seg_offsets = segs;
  }
  if (seqs.chunk_offsets == nullptr) {
    // uniform lengths: the kernels compute chunk indices arithmetically and never read this;
    // pass a valid address anyway
    seqs.chunk_offsets = reinterpret_cast<const int32_t*>(ws);
  }
  const float* stats = a->prep_chunk_stats;
  const float* gvec = a->prep_gate_vectors;
  if (!a->prep_L) {
    float* stats_ws = reinterpret_cast<float*>(ws + plan.stats_off);
    float* gvec_ws = reinterpret_cast<float*>(ws + plan.gvec_off);
    // The table's Aw tile is read by every forward kernel but fused_fwd_v14 and cp_summary_v14:
    // skip it when those are the only readers (8 of ~18 KB a chunk and head)
    const bool v14_only = a->chunk_states_t == nullptr && use_fused_fwd_v14();
    FGDN_TRY(run_chunk_prep(variant, seqs, a->num_qk_heads, a->num_v_heads, a->use_qk_l2norm, a->scale, a->q, a->k,
                            a->beta, a->g, /*L=*/nullptr, stats_ws, gvec_ws, stream, /*store_aw=*/!v14_only));
    stats = stats_ws;
    gvec = gvec_ws;
  }
  FusedFwdLaunch f;
  f.variant = variant;
  f.seqs = seqs;
  f.seg_offsets = seg_offsets;
  f.seg_chunks = plan.cp.seg_chunks;
  f.num_segs = (int)plan.cp.num_segs;
  f.num_qk_heads = a->num_qk_heads;
  f.num_v_heads = a->num_v_heads;
  f.q = a->q;
  f.k = a->k;
  f.v = a->v;
  f.gate_vectors = gvec;
  f.chunk_stats = stats;
  // ln(0) = -inf: no warm-up passes the test, so tolerance 0 means every split segment is exact
  f.cp_log_tol = a->cp_tolerance > 0.f ? std::log(a->cp_tolerance) : -INFINITY;
  f.h0 = a->initial_state;
  f.o = a->o;
  f.ht = a->final_state;
  f.chunk_states_t = a->chunk_states_t;
  if (plan.cp.exact) {
    char* cp_ws = ws + plan.cp_off;
    float* seg_states = reinterpret_cast<float*>(cp_ws + plan.cp.states_off);
    FGDN_TRY(run_cp_exact(f, reinterpret_cast<float*>(cp_ws + plan.cp.summ_off),
                          reinterpret_cast<int32_t*>(cp_ws + plan.cp.kinds_off), seg_states, stream));
    f.seg_states = seg_states;
  }
  return run_fused_fwd(f, stream);
}
