/*
 * flashgdn: ahead-of-time compiled Gated DeltaNet kernels for NVIDIA Hopper (sm_90a).
 *
 * Public C API. Every entry point takes device pointers, shapes and a CUDA stream; none
 * allocates device memory, synchronises, or needs anything at run time but the NVIDIA driver
 * (the CUDA runtime is linked statically). Calls are asynchronous on `stream`.
 *
 * Layouts are FLA's with the batch and time axes packed into one token axis:
 *   q, k  [total_tokens, num_qk_heads, 128]        (bf16 or fp16)
 *   v, o  [total_tokens, num_v_heads, 128]         (same dtype as q)
 *   g     [total_tokens, num_v_heads]              (fp32, log-space gate, <= 0)
 *   beta  [total_tokens, num_v_heads]              (q's dtype or fp32)
 *   state [num_seqs, num_v_heads, 128, 128]        (fp32, K x V)
 * all contiguous. Sequences are either `num_seqs` back-to-back runs of `seq_len` tokens
 * (seq_len > 0) or given by `cu_seqlens` (seq_len == 0; int32 [num_seqs + 1], device).
 *
 * Errors: a non-zero fgdn_status; fgdn_last_error() describes the last failure on the
 * calling thread.
 */
#ifndef FLASHGDN_FLASHGDN_H_
#define FLASHGDN_FLASHGDN_H_

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define FGDN_API __declspec(dllexport)
#else
#define FGDN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FLASHGDN_VERSION_MAJOR 0
#define FLASHGDN_VERSION_MINOR 1
#define FLASHGDN_VERSION_PATCH 0
#define FLASHGDN_CHUNK_SIZE 64
#define FLASHGDN_HEAD_DIM 128

typedef enum fgdn_status {
  FGDN_SUCCESS = 0,
  FGDN_ERROR_INVALID_ARGUMENT = 1,  /* bad shape, dtype, pointer or flag */
  FGDN_ERROR_UNSUPPORTED_DEVICE = 2,/* no CUDA device, driver too old, or not sm_90 */
  FGDN_ERROR_CUDA = 3               /* a CUDA call or kernel launch failed */
} fgdn_status;

typedef enum fgdn_dtype {
  FGDN_BF16 = 0,
  FGDN_FP16 = 1,
  FGDN_FP32 = 2
} fgdn_dtype;

/* Message for the last error on this thread ("" if none). Valid until the next call. */
FGDN_API const char* fgdn_last_error(void);

/* "major.minor.patch (sm_90a, CUDA <toolkit version>)". */
FGDN_API const char* fgdn_build_info(void);

/* FGDN_SUCCESS if `device` can run flashgdn's kernels (an sm_90 GPU and a driver new enough
 * for the toolkit the library was built with); otherwise the reason in fgdn_last_error(). */
FGDN_API fgdn_status fgdn_check_device(int device);

/* Sequence layout shared by the entry points. */
typedef struct fgdn_seqs {
  int total_tokens;          /* rows of the token axis */
  int num_seqs;              /* number of sequences N */
  int seq_len;               /* > 0: uniform length; 0: varlen from cu_seqlens */
  const int32_t* cu_seqlens; /* varlen only: [N+1], cu_seqlens[0] == 0, non-decreasing,
                                cu_seqlens[N] == total_tokens. Read on the device and not checked
                                there: a table that breaks these is undefined behaviour (the
                                kernels may read and write out of range) */
  const int32_t* chunk_offsets; /* varlen only: [N+1], prefix sums of ceil(len_n / 64) */
  int num_chunks;            /* total chunks = sum ceil(len_n / 64) (an upper bound is allowed) */
} fgdn_seqs;

/*
 * Chunk preparation (first stage of the forward): for every 64-token chunk and value head,
 *   L = (I + StrictLower(diag(beta) K K^T))^-1      (gate-free WY inverse; K L2-normalised
 *                                                   per row first when use_qk_l2norm != 0)
 * written to `L` [total_tokens, num_v_heads, 64] in `dtype` (row t holds the row of the
 * chunk's matrix for token t); `chunk_stats` [num_chunks, num_v_heads, 2] fp32:
 * (sum of g over the chunk, max over its tokens of beta_t * |k_t|^2); and `gate_vectors`
 * [num_chunks, num_v_heads, FGDN_GATE_VECTOR_ROWS, 64] fp32 (19.5 KB per chunk and value head),
 * the per-token gate/normalisation factors the fused forward and the backward's reverse pass
 * apply, followed by the forward's gated WY factor tiles (two 64x64 tiles in `dtype`, stored in
 * the fp32 rows' bytes) (layout: kernels_tl/common.py GV_*; their input, not a stable API).
 * `gate_vectors` must be 16-byte aligned (the forward reads it with TMA).
 * Chunks are numbered sequence by sequence. `q` is read only with use_qk_l2norm (may be NULL
 * otherwise); `scale` is the attention scale folded into the factors. `k` must be 16-byte
 * aligned (read with TMA).
 */
#define FGDN_GATE_VECTOR_ROWS 78   /* == kernels_tl/common.py GV_ROWS */

typedef struct fgdn_chunk_prep_args {
  fgdn_dtype dtype;       /* of k and L */
  fgdn_dtype beta_dtype;  /* dtype or FGDN_FP32 */
  fgdn_seqs seqs;
  int num_qk_heads;
  int num_v_heads;        /* multiple of num_qk_heads */
  int use_qk_l2norm;
  float scale;
  const void* q;
  const void* k;
  const void* beta;
  const float* g;
  void* L;
  float* chunk_stats;
  float* gate_vectors;
} fgdn_chunk_prep_args;

FGDN_API fgdn_status fgdn_chunk_prep(const fgdn_chunk_prep_args* args, cudaStream_t stream);

/*
 * Forward pass: o (and optionally the final state) of the gated delta rule.
 *
 * Runs, on `stream`: [varlen: per-sequence offsets] -> chunk_prep -> the fused forward kernel.
 * With cp_segment_chunks > 0 every sequence is cut into segments of that many chunks that run in
 * parallel (docs/context-parallelism.md states the bound).
 * `seqs.chunk_offsets` and `seqs.num_chunks` are ignored (computed here). The caller provides
 * a device workspace of at least fgdn_forward_workspace_size(args) bytes (256-byte aligned);
 * its contents are scratch and need not be initialised.
 */
typedef struct fgdn_forward_args {
  fgdn_dtype dtype;             /* q, k, v, o: FGDN_BF16 or FGDN_FP16 */
  fgdn_dtype beta_dtype;        /* dtype or FGDN_FP32 */
  fgdn_seqs seqs;
  int num_qk_heads;
  int num_v_heads;              /* multiple of num_qk_heads */
  float scale;                  /* usually 1/sqrt(128) */
  int use_qk_l2norm;            /* q, k -> x / sqrt(|x|^2 + 1e-6) per head first */
  const void* q;
  const void* k;
  const void* v;
  const float* g;
  const void* beta;
  const float* initial_state;   /* [N, HV, 128, 128] or NULL (zero) */
  void* o;                      /* [total_tokens, HV, 128]; NULL allowed with chunk_states_t (the
                                   backward's state pass: states only, no output work) */
  float* final_state;           /* [N, HV, 128, 128] or NULL (not written) */
  int cp_segment_chunks;        /* intra-card context parallelism: chunks per segment (0: off) */
  float cp_tolerance;           /* CP warm-up bound: the dropped part of a segment's incoming state
                                   is <= cp_tolerance * |state|; segments that cannot meet it get
                                   their true incoming state through the exact correction (the
                                   transition products of the segments before them). 0: no
                                   warm-up, every segment exact. Usual value 1e-6 */
  int cp_restart_only;          /* 0 (usual): the exact correction as above; 1: segments that cannot
                                   warm up restart at their sequence's first chunk instead (exact
                                   too, slower; less workspace) */
  void* chunk_states_t;         /* NULL, or [num_chunks, HV, 128, 128] in `dtype`: the state at the
                                   start of every chunk, transposed (S^T, V x K), for the backward
                                   (rounded as the forward's own GEMMs use it); 16-byte aligned.
                                   Chunks numbered sequence by sequence; rows: N * ceil(T / 64)
                                   for uniform lengths, total_tokens / 64 + N (a bound) for varlen */
  /* NULL, or all three: fgdn_chunk_prep's outputs for these very inputs (k, beta in fp32 or
     beta_dtype, g, q, scale, use_qk_l2norm; stats / gate vectors with the row count above).
     The forward then skips its own chunk_prep and its workspace shrinks by their size - the
     backward, which needs them anyway, makes them once. The forward reads only the stats and
     the gate-vector table (whose last rows hold its gated WY factors); prep_L marks the three as
     given and is not read. */
  const void* prep_L;
  const float* prep_chunk_stats;
  const float* prep_gate_vectors;
} fgdn_forward_args;

FGDN_API size_t fgdn_forward_workspace_size(const fgdn_forward_args* args);
FGDN_API fgdn_status fgdn_forward(const fgdn_forward_args* args, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream);

/*
 * Backward stages. The state pass is fgdn_forward with `chunk_states_t`; then the reverse pass
 * and the per-chunk gradients below (the Python package composes them and finishes GVA sums
 * and the L2 norm's gradient, flashgdn/backward.py). Inputs as for the
 * forward, `beta` in fp32, and `L` / `gate_vectors` from fgdn_chunk_prep on the same k, beta, g
 * (and use_qk_l2norm). With the L2 norm, q and k stay raw and `q_norm_factor` / `k_norm_factor`
 * [total_tokens, num_qk_heads] fp32 hold 1/sqrt(|x|^2 + 1e-6) per row (NULL: no norm).
 * Chunks are numbered sequence by sequence; `seqs.num_chunks` rows are written at most and
 * varlen needs `seqs.chunk_offsets` (as for fgdn_chunk_prep).
 *
 * fgdn_backward_dstates: the reverse pass. Given do [total_tokens, HV, 128] and d(final state)
 * (NULL: zero) (q, k, d_out and gate_vectors are read with TMA: 16-byte aligned), writes the gradient of the state at the end of every chunk, transposed, into
 * `chunk_dstates_t` [num_chunks, HV, 128, 128] in `dtype`, dv_new of every token into `dv_new`
 * and, when `d_initial_state` is non-NULL, the gradient of the initial state [N, HV, 128, 128]
 * fp32 (sequences with no tokens pass d(final state) through).
 * `dv_new` [total_tokens, HV, 256] in `dtype` (16-byte aligned) holds the fp32 dv_new as two
 * planes per half of V: elements [128 h, 128 h + 64) the high part bf16(x) (fp16 for fp16) of
 * V columns [64 h, 64 h + 64), elements [128 h + 64, 128 h + 128) the low part x - high. The low
 * planes are written only for each sequence's last chunk when it is partial (the only rows
 * fgdn_backward_chunk_grads reads them for); elsewhere they are left as they were.
 */
typedef struct fgdn_backward_dstates_args {
  fgdn_dtype dtype;             /* q, k, d_out */
  fgdn_seqs seqs;
  int num_qk_heads;
  int num_v_heads;
  const void* q;
  const void* k;
  const void* d_out;
  const void* L;                /* not read (may be NULL): the reverse pass takes the gated WY tile
                                   Aw from gate_vectors; kept so that callers need not change */
  const float* gate_vectors;   /* fgdn_chunk_prep's, made with the forward's scale and norm: beta,
                                   the norm factors and the scale reach the reverse pass through it */
  const float* d_final_state;   /* or NULL (zero) */
  void* chunk_dstates_t;        /* in dtype */
  void* dv_new;                 /* in dtype, high / low planes (above) */
  float* d_initial_state;       /* or NULL (not written) */
  int cp_segment_chunks;        /* intra-card CP as in fgdn_forward (0: off) */
  float cp_tolerance;           /* as in fgdn_forward; the warm-up runs after a segment's end */
  const float* chunk_stats;     /* fgdn_chunk_prep's stats; read when cp_segment_chunks > 0 */
  const int32_t* seg_offsets;   /* varlen only: [N+1], prefix sums over sequences of
                                   max(ceil(ceil(len / 64) / cp_segment_chunks), 1) (1 per
                                   sequence when cp_segment_chunks == 0); or NULL: made here, in
                                   the workspace (fgdn_backward_dstates_workspace_size counts it) */
  int cp_restart_only;          /* as in fgdn_forward: 0 = segments that cannot warm up take the
                                   exact correction, 1 = they restart at their sequence's end */
  void* workspace;              /* device scratch of fgdn_backward_dstates_workspace_size(args)
                                   bytes, 256-byte aligned (NULL allowed when that is 0) */
  size_t workspace_bytes;
} fgdn_backward_dstates_args;

FGDN_API size_t fgdn_backward_dstates_workspace_size(const fgdn_backward_dstates_args* args);

/*
 * fgdn_backward_chunk_grads: the per-chunk gradients, independent across chunks. From the
 * inputs, `chunk_states_t` (fgdn_forward), `chunk_dstates_t` and `dv_new`
 * (fgdn_backward_dstates), writes for every token: `dq`, `dk` fp32 (the gradient of the
 * normalised q / k when norm factors are given: the caller differentiates the norm), `dv`
 * [total_tokens, HV, 128] in `dtype`, `dg` and `dbeta` [total_tokens, HV] fp32.
 * dq / dk layout: with `gva_sum` == 0, [total_tokens, HV, 128] per value head (the caller sums
 * each GVA group; deterministic). With `gva_sum` != 0, [total_tokens, num_qk_heads, 128], each
 * row the sum over its GVA group: the function zeroes them, then the value heads add into them
 * with float atomics, so the summation order - and the last bits - can vary from run to run;
 * HV / num_qk_heads times less memory. Without GVA (HV == num_qk_heads) both layouts are the
 * same and the result is deterministic either way.
 */
typedef struct fgdn_backward_chunk_grads_args {
  fgdn_dtype dtype;             /* q, k, v, d_out, L */
  fgdn_seqs seqs;
  int num_qk_heads;
  int num_v_heads;
  float scale;
  const void* q;
  const void* k;
  const void* v;
  const void* d_out;
  const void* L;
  const float* beta;
  const float* q_norm_factor;   /* both or neither */
  const float* k_norm_factor;
  const float* gate_vectors;
  const void* chunk_states_t;   /* in dtype (fgdn_forward) */
  const void* chunk_dstates_t;  /* in dtype (fgdn_backward_dstates) */
  const float* initial_state;   /* NULL (zero) or the forward's h0: a sequence of one (partial)
                                   chunk takes its state from it in fp32 */
  const void* dv_new;           /* fgdn_backward_dstates' planes, in dtype */
  const float* d_final_state;   /* NULL (zero) or the one given to fgdn_backward_dstates: a
                                   sequence's partial last chunk takes <S, dS'> from it in fp32 */
  int gva_sum;                  /* dq / dk layout, see above */
  float* dq;
  float* dk;
  void* dv;                     /* in dtype */
  float* dg;
  float* dbeta;
} fgdn_backward_chunk_grads_args;

FGDN_API fgdn_status fgdn_backward_dstates(const fgdn_backward_dstates_args* args, cudaStream_t stream);
FGDN_API fgdn_status fgdn_backward_chunk_grads(const fgdn_backward_chunk_grads_args* args, cudaStream_t stream);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* FLASHGDN_FLASHGDN_H_ */
