// Helpers the launchers share: dtype dispatch, the current device check, launch error mapping.
#pragma once

#include <cstdint>

#include "status.h"

namespace flashgdn {

// Index of the kernel variant for (io dtype, beta dtype), in kernels_tl/common.py IO_VARIANTS
// order: bf16/bf16, bf16/fp32, fp16/fp16, fp16/fp32. -1 if unsupported.
int io_variant(fgdn_dtype dtype, fgdn_dtype beta_dtype);

// Check the device current on this thread (cached per device).
fgdn_status check_current_device();

// Validates the sequence description shared by the entry points.
fgdn_status check_seqs(const fgdn_seqs& seqs);

// check_seqs plus what the stage entry points that index chunks need: chunk_offsets for varlen
// and num_chunks at least the number of chunks.
fgdn_status check_chunked_seqs(const fgdn_seqs& seqs);

// num_v_heads a positive multiple of num_qk_heads (GVA).
fgdn_status check_heads(int num_qk_heads, int num_v_heads);

// True when p is 16-byte aligned: TMA needs it of every tensor the kernels move with TMA.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A pointer the kernel reads only in some modes (varlen arrays, optional tensors) still has to be
// a valid device address: p, or else fallback (any buffer of the call).
inline void* or_valid(const void* p, const void* fallback) { return const_cast<void*>(p ? p : fallback); }

// Scratch arrays in a caller's workspace start on 256-byte boundaries.
inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// Map a generated launcher's return code to a status, with its message.
fgdn_status launch_result(int rc, const char* kernel, const char* message);

}  // namespace flashgdn
