"""seq_plan: per-sequence prefix sums for varlen batches, on the device (no host sync).

From cu_seqlens (int32 [N+1]) writes
    chunk_offsets[n] = sum_{m<n} ceil(len_m / 64)
    seg_offsets[n]   = sum_{m<n} max(ceil(ceil(len_m / 64) / seg_chunks), 1)
(the forward gives every sequence at least one CTA, so empty sequences still get their
final state). One CTA of 1024 threads: each thread sums a contiguous run of sequences,
then a Hillis-Steele scan over the 1024 partial sums in shared memory.
"""

import tilelang
import tilelang.language as T

from common import CHUNK, pdl_wait

NAME = "seq_plan"
PASS_CONFIGS = {tilelang.PassConfigKey.TL_ENABLE_FAST_MATH: False}
THREADS = 1024


def build():
    NS1 = T.dynamic("NS1")

    @T.prim_func
    def seq_plan(
        cu_seqlens: T.Tensor((NS1,), "int32"),
        chunk_offsets: T.Tensor((NS1,), "int32"),
        seg_offsets: T.Tensor((NS1,), "int32"),
        num_seqs: T.int32,
        seg_chunks: T.int32,
    ):
        with T.Kernel(1, threads=THREADS) as (_,):
            pdl_wait()
            tx = T.get_thread_binding()
            part = T.alloc_shared((2, THREADS), "int32")
            tmp = T.alloc_shared((2, THREADS), "int32")
            acc = T.alloc_local((4,), "int32")
            per = T.ceildiv(num_seqs, THREADS)
            lo = T.min(tx * per, num_seqs)
            hi = T.min(lo + per, num_seqs)
            acc[0] = 0
            acc[1] = 0
            for m in T.serial(hi - lo):
                acc[2] = T.ceildiv(cu_seqlens[lo + m + 1] - cu_seqlens[lo + m], CHUNK)
                acc[0] = acc[0] + acc[2]
                acc[1] = acc[1] + T.max(T.ceildiv(acc[2], seg_chunks), 1)
            part[0, tx] = acc[0]
            part[1, tx] = acc[1]
            T.sync_threads()
            for d in T.unroll(10):
                tmp[0, tx] = T.if_then_else(tx >= (1 << d), part[0, tx - (1 << d)], 0)
                tmp[1, tx] = T.if_then_else(tx >= (1 << d), part[1, tx - (1 << d)], 0)
                T.sync_threads()
                part[0, tx] = part[0, tx] + tmp[0, tx]
                part[1, tx] = part[1, tx] + tmp[1, tx]
                T.sync_threads()
            # exclusive prefix of this thread's run, then walk the run again
            acc[0] = part[0, tx] - acc[0]
            acc[1] = part[1, tx] - acc[1]
            for m in T.serial(hi - lo):
                chunk_offsets[lo + m] = acc[0]
                seg_offsets[lo + m] = acc[1]
                acc[2] = T.ceildiv(cu_seqlens[lo + m + 1] - cu_seqlens[lo + m], CHUNK)
                acc[0] = acc[0] + acc[2]
                acc[1] = acc[1] + T.max(T.ceildiv(acc[2], seg_chunks), 1)
            if tx == THREADS - 1:
                chunk_offsets[num_seqs] = part[0, tx]
                seg_offsets[num_seqs] = part[1, tx]

    return seq_plan


def variants():
    return [("fgdn_seq_plan", {})]
