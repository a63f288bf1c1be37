// pybind11 module flashgdn._C: a thin shim over the C API. It takes raw device pointers, shapes
// and the CUDA stream as integers, so it links neither libtorch nor any Python tensor library
// and one wheel works across torch versions.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <pybind11/pybind11.h>

#include "flashgdn/flashgdn.h"

namespace py = pybind11;

namespace {

void raise_on_error(fgdn_status st) {
  if (st == FGDN_SUCCESS) return;
  std::string msg = fgdn_last_error();
  if (st == FGDN_ERROR_INVALID_ARGUMENT) throw py::value_error(msg);
  throw std::runtime_error("flashgdn: " + msg);
}

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

fgdn_seqs make_seqs(int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens, uintptr_t chunk_offsets,
                    int num_chunks) {
  fgdn_seqs s;
  s.total_tokens = total_tokens;
  s.num_seqs = num_seqs;
  s.seq_len = seq_len;
  s.cu_seqlens = ptr<const int32_t>(cu_seqlens);
  s.chunk_offsets = ptr<const int32_t>(chunk_offsets);
  s.num_chunks = num_chunks;
  return s;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "flashgdn native kernels (ahead-of-time compiled for sm_90a)";
  m.def("build_info", []() { return std::string(fgdn_build_info()); });
  m.def(
      "check_device",
      [](int device) {
        fgdn_status st = fgdn_check_device(device);
        return py::make_tuple(static_cast<int>(st), std::string(fgdn_last_error()));
      },
      py::arg("device"), "(status, message): status 0 if the device can run flashgdn's kernels");
  m.def(
      "chunk_prep",
      [](int dtype, int beta_dtype, int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens,
         uintptr_t chunk_offsets, int num_chunks, int num_qk_heads, int num_v_heads, bool use_qk_l2norm, float scale,
         uintptr_t q, uintptr_t k, uintptr_t beta, uintptr_t g, uintptr_t L, uintptr_t chunk_stats,
         uintptr_t gate_vectors, uintptr_t stream) {
        fgdn_chunk_prep_args a;
        a.dtype = static_cast<fgdn_dtype>(dtype);
        a.beta_dtype = static_cast<fgdn_dtype>(beta_dtype);
        a.seqs = make_seqs(total_tokens, num_seqs, seq_len, cu_seqlens, chunk_offsets, num_chunks);
        a.num_qk_heads = num_qk_heads;
        a.num_v_heads = num_v_heads;
        a.use_qk_l2norm = use_qk_l2norm ? 1 : 0;
        a.scale = scale;
        a.q = ptr<const void>(q);
        a.k = ptr<const void>(k);
        a.beta = ptr<const void>(beta);
        a.g = ptr<const float>(g);
        a.L = ptr<void>(L);
        a.chunk_stats = ptr<float>(chunk_stats);
        a.gate_vectors = ptr<float>(gate_vectors);
        raise_on_error(fgdn_chunk_prep(&a, ptr<CUstream_st>(stream)));
      },
      py::arg("dtype"), py::arg("beta_dtype"), py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"),
      py::arg("cu_seqlens"), py::arg("chunk_offsets"), py::arg("num_chunks"), py::arg("num_qk_heads"),
      py::arg("num_v_heads"), py::arg("use_qk_l2norm"), py::arg("scale"), py::arg("q"), py::arg("k"),
      py::arg("beta"), py::arg("g"), py::arg("L"), py::arg("chunk_stats"), py::arg("gate_vectors"),
      py::arg("stream"));

  // The forward: (workspace bytes) for a description, and the launch sequence.
  auto fwd_args = [](int dtype, int beta_dtype, int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens,
                     int num_qk_heads, int num_v_heads, float scale, bool use_qk_l2norm, uintptr_t q, uintptr_t k,
                     uintptr_t v, uintptr_t g, uintptr_t beta, uintptr_t h0, uintptr_t o, uintptr_t ht,
                     int cp_segment_chunks, float cp_tolerance) {
    fgdn_forward_args a;
    a.dtype = static_cast<fgdn_dtype>(dtype);
    a.beta_dtype = static_cast<fgdn_dtype>(beta_dtype);
    a.seqs = make_seqs(total_tokens, num_seqs, seq_len, cu_seqlens, 0, 0);
    a.num_qk_heads = num_qk_heads;
    a.num_v_heads = num_v_heads;
    a.scale = scale;
    a.use_qk_l2norm = use_qk_l2norm ? 1 : 0;
    a.q = ptr<const void>(q);
    a.k = ptr<const void>(k);
    a.v = ptr<const void>(v);
    a.g = ptr<const float>(g);
    a.beta = ptr<const void>(beta);
    a.initial_state = ptr<const float>(h0);
    a.o = ptr<void>(o);
    a.final_state = ptr<float>(ht);
    a.cp_segment_chunks = cp_segment_chunks;
    a.cp_tolerance = cp_tolerance;
    a.cp_restart_only = 0;
    a.chunk_states_t = nullptr;
    a.prep_L = nullptr;
    a.prep_chunk_stats = nullptr;
    a.prep_gate_vectors = nullptr;
    return a;
  };
  m.def(
      "forward_workspace_size",
      [fwd_args](int dtype, int beta_dtype, int total_tokens, int num_seqs, int seq_len, int num_qk_heads,
                 int num_v_heads, int cp_segment_chunks, uintptr_t prep_L, bool cp_restart_only) {
        fgdn_forward_args a = fwd_args(dtype, beta_dtype, total_tokens, num_seqs, seq_len, 0, num_qk_heads,
                                       num_v_heads, 1.0f, false, 0, 0, 0, 0, 0, 0, 0, 0, cp_segment_chunks, 0.f);
        a.prep_L = ptr<const void>(prep_L);   // the size only asks whether it is given
        a.cp_restart_only = cp_restart_only ? 1 : 0;
        return fgdn_forward_workspace_size(&a);
      },
      py::arg("dtype"), py::arg("beta_dtype"), py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"),
      py::arg("num_qk_heads"), py::arg("num_v_heads"), py::arg("cp_segment_chunks"), py::arg("prep_L") = 0,
      py::arg("cp_restart_only") = false);
  m.def(
      "forward",
      [fwd_args](int dtype, int beta_dtype, int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens,
                 int num_qk_heads, int num_v_heads, float scale, bool use_qk_l2norm, uintptr_t q, uintptr_t k,
                 uintptr_t v, uintptr_t g, uintptr_t beta, uintptr_t h0, uintptr_t o, uintptr_t ht,
                 int cp_segment_chunks, float cp_tolerance, uintptr_t workspace, size_t workspace_bytes,
                 uintptr_t stream, uintptr_t chunk_states_t, uintptr_t prep_L, uintptr_t prep_chunk_stats,
                 uintptr_t prep_gate_vectors, bool cp_restart_only) {
        fgdn_forward_args a = fwd_args(dtype, beta_dtype, total_tokens, num_seqs, seq_len, cu_seqlens, num_qk_heads,
                                       num_v_heads, scale, use_qk_l2norm, q, k, v, g, beta, h0, o, ht,
                                       cp_segment_chunks, cp_tolerance);
        a.chunk_states_t = ptr<void>(chunk_states_t);
        a.prep_L = ptr<const void>(prep_L);
        a.prep_chunk_stats = ptr<const float>(prep_chunk_stats);
        a.prep_gate_vectors = ptr<const float>(prep_gate_vectors);
        a.cp_restart_only = cp_restart_only ? 1 : 0;
        raise_on_error(fgdn_forward(&a, ptr<void>(workspace), workspace_bytes, ptr<CUstream_st>(stream)));
      },
      py::arg("dtype"), py::arg("beta_dtype"), py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"),
      py::arg("cu_seqlens"), py::arg("num_qk_heads"), py::arg("num_v_heads"), py::arg("scale"),
      py::arg("use_qk_l2norm"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("g"), py::arg("beta"),
      py::arg("h0"), py::arg("o"), py::arg("ht"), py::arg("cp_segment_chunks"), py::arg("cp_tolerance"),
      py::arg("workspace"),
      py::arg("workspace_bytes"), py::arg("stream"), py::arg("chunk_states_t") = 0, py::arg("prep_L") = 0,
      py::arg("prep_chunk_stats") = 0, py::arg("prep_gate_vectors") = 0, py::arg("cp_restart_only") = false);

  // Backward stages (flashgdn/backward.py composes them with the per-chunk gradients).
  m.def(
      "backward_dstates",
      [](int dtype, int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens, uintptr_t chunk_offsets,
         int num_chunks, int num_qk_heads, int num_v_heads, uintptr_t q, uintptr_t k, uintptr_t d_out,
         uintptr_t L, uintptr_t gate_vectors,
         uintptr_t dht, uintptr_t chunk_dstates_t,
         uintptr_t dv_new, uintptr_t dh0, uintptr_t stream, int cp_segment_chunks, float cp_tolerance,
         uintptr_t chunk_stats, uintptr_t seg_offsets, uintptr_t workspace, size_t workspace_bytes,
         bool cp_restart_only) {
        fgdn_backward_dstates_args a;
        a.dtype = static_cast<fgdn_dtype>(dtype);
        a.seqs = make_seqs(total_tokens, num_seqs, seq_len, cu_seqlens, chunk_offsets, num_chunks);
        a.num_qk_heads = num_qk_heads;
        a.num_v_heads = num_v_heads;
        a.q = ptr<const void>(q);
        a.k = ptr<const void>(k);
        a.d_out = ptr<const void>(d_out);
        a.L = ptr<const void>(L);
        a.gate_vectors = ptr<const float>(gate_vectors);
        a.d_final_state = ptr<const float>(dht);
        a.chunk_dstates_t = ptr<void>(chunk_dstates_t);
        a.dv_new = ptr<void>(dv_new);
        a.d_initial_state = ptr<float>(dh0);
        a.cp_segment_chunks = cp_segment_chunks;
        a.cp_tolerance = cp_tolerance;
        a.chunk_stats = ptr<const float>(chunk_stats);
        a.seg_offsets = ptr<const int32_t>(seg_offsets);
        a.cp_restart_only = cp_restart_only ? 1 : 0;
        a.workspace = ptr<void>(workspace);
        a.workspace_bytes = workspace_bytes;
        raise_on_error(fgdn_backward_dstates(&a, ptr<CUstream_st>(stream)));
      },
      py::arg("dtype"), py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"), py::arg("cu_seqlens"),
      py::arg("chunk_offsets"), py::arg("num_chunks"), py::arg("num_qk_heads"), py::arg("num_v_heads"),
      py::arg("q"), py::arg("k"), py::arg("d_out"), py::arg("L"), py::arg("gate_vectors"), py::arg("dht"), py::arg("chunk_dstates_t"), py::arg("dv_new"), py::arg("dh0"),
      py::arg("stream"), py::arg("cp_segment_chunks") = 0, py::arg("cp_tolerance") = 1e-6f, py::arg("chunk_stats") = 0,
      py::arg("seg_offsets") = 0, py::arg("workspace") = 0, py::arg("workspace_bytes") = 0,
      py::arg("cp_restart_only") = false);
  m.def(
      "backward_dstates_workspace_size",
      [](int total_tokens, int num_seqs, int seq_len, int num_v_heads, int cp_segment_chunks, bool cp_restart_only) {
        fgdn_backward_dstates_args a{};
        a.seqs = make_seqs(total_tokens, num_seqs, seq_len, 0, 0, 0);
        a.num_v_heads = num_v_heads;
        a.cp_segment_chunks = cp_segment_chunks;
        a.cp_restart_only = cp_restart_only ? 1 : 0;
        return fgdn_backward_dstates_workspace_size(&a);
      },
      py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"), py::arg("num_v_heads"),
      py::arg("cp_segment_chunks"), py::arg("cp_restart_only") = false);
  m.def(
      "backward_chunk_grads",
      [](int dtype, int total_tokens, int num_seqs, int seq_len, uintptr_t cu_seqlens, uintptr_t chunk_offsets,
         int num_chunks, int num_qk_heads, int num_v_heads, float scale, uintptr_t q, uintptr_t k, uintptr_t v,
         uintptr_t d_out, uintptr_t L, uintptr_t beta, uintptr_t q_norm_factor, uintptr_t k_norm_factor,
         uintptr_t gate_vectors, uintptr_t chunk_states_t, uintptr_t chunk_dstates_t, uintptr_t dv_new, uintptr_t dq,
         uintptr_t dk, uintptr_t dv, uintptr_t dg, uintptr_t dbeta, uintptr_t stream, int gva_sum, uintptr_t dht,
         uintptr_t h0) {
        fgdn_backward_chunk_grads_args a;
        a.dtype = static_cast<fgdn_dtype>(dtype);
        a.seqs = make_seqs(total_tokens, num_seqs, seq_len, cu_seqlens, chunk_offsets, num_chunks);
        a.num_qk_heads = num_qk_heads;
        a.num_v_heads = num_v_heads;
        a.scale = scale;
        a.q = ptr<const void>(q);
        a.k = ptr<const void>(k);
        a.v = ptr<const void>(v);
        a.d_out = ptr<const void>(d_out);
        a.L = ptr<const void>(L);
        a.beta = ptr<const float>(beta);
        a.q_norm_factor = ptr<const float>(q_norm_factor);
        a.k_norm_factor = ptr<const float>(k_norm_factor);
        a.gate_vectors = ptr<const float>(gate_vectors);
        a.chunk_states_t = ptr<const void>(chunk_states_t);
        a.chunk_dstates_t = ptr<const void>(chunk_dstates_t);
        a.dv_new = ptr<const void>(dv_new);
        a.gva_sum = gva_sum;
        a.d_final_state = ptr<const float>(dht);
        a.initial_state = ptr<const float>(h0);
        a.dq = ptr<float>(dq);
        a.dk = ptr<float>(dk);
        a.dv = ptr<void>(dv);
        a.dg = ptr<float>(dg);
        a.dbeta = ptr<float>(dbeta);
        raise_on_error(fgdn_backward_chunk_grads(&a, ptr<CUstream_st>(stream)));
      },
      py::arg("dtype"), py::arg("total_tokens"), py::arg("num_seqs"), py::arg("seq_len"), py::arg("cu_seqlens"),
      py::arg("chunk_offsets"), py::arg("num_chunks"), py::arg("num_qk_heads"), py::arg("num_v_heads"),
      py::arg("scale"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("d_out"), py::arg("L"), py::arg("beta"),
      py::arg("q_norm_factor"), py::arg("k_norm_factor"), py::arg("gate_vectors"), py::arg("chunk_states_t"),
      py::arg("chunk_dstates_t"), py::arg("dv_new"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("dg"),
      py::arg("dbeta"), py::arg("stream"), py::arg("gva_sum") = 0, py::arg("dht") = 0, py::arg("h0") = 0);
}
