"""Per-phase cycle timeline of fused_fwd's first CTA (debug build from build_tools/debug_kernel.py).

  python benchmarks/timeline.py .devrun/dbg_fused_fwd.so dbg_fused_fwd B T H HV [gates]
"""
import ctypes
import sys

import torch

from flashgdn import ops
from flashgdn.testing import make_inputs

so, sym = sys.argv[1], sys.argv[2]
B, T, H, HV = (int(x) for x in sys.argv[3:7])
gates = sys.argv[7] if len(sys.argv) > 7 else "decay"
lib = ctypes.CDLL(so)
fn = getattr(lib, sym + "_launch")
x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates=gates, seed=0)
L, stats, gvec = ops.chunk_prep(x["k"], x["beta"], x["g"])
o = torch.empty_like(x["v"])
N = B
ht = torch.zeros(N, HV, 128, 128, dtype=torch.float32, device="cuda")
nct = (T + 63) // 64
P = ctypes.c_void_p
I = ctypes.c_int
dummy = torch.zeros(16, dtype=torch.int32, device="cuda")
# the launch signature of generate.py's wrapper: q, k, v, wy (gvec's memory), gvec, stats, h0,
# cu_seqlens, chunk_offsets, seg_offsets, o, ht, hsT, seg_states, then the scalars and dims
args = [P(t.data_ptr()) for t in (x["q"], x["k"], x["v"], gvec, gvec, stats, x["initial_state"])]
args += [P(dummy.data_ptr())] * 3 + [P(o.data_ptr()), P(ht.data_ptr()), P(dummy.data_ptr()), P(dummy.data_ptr())]
# seq_len, num_seqs, seg_chunks, num_segs, has_h0, store_final, store_states, cp_log_tol, exact_cp
args += [I(T), I(B), I(1 << 30), I(B), I(1), I(0), I(0), ctypes.c_float(-13.8), I(0)]
# Ttot, H, HV, NCG, NST, NS1, NCS, NSEG, stream
args += [I(B * T), I(H), I(HV), I(gvec.shape[0]), I(N), I(N + 1), I(1), I(1), P(torch.cuda.current_stream().cuda_stream)]
for _ in range(3):
    ht.zero_()
    rc = fn(*args)
    assert rc == 0, rc
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(10):
    fn(*args)
end.record()
torch.cuda.synchronize()
print(f"kernel {start.elapsed_time(end) / 10:.4f} ms (event, stamped build)")
ht.zero_()
fn(*args)
torch.cuda.synchronize()
tl = ht[0, 0, :64, :32].double().cpu()
rows = range(8, min(56, nct - 2))


def deltas(cols):
    import statistics
    out = [statistics.median([tl[i, b] - tl[i, a] for i in rows]) for a, b in zip(cols[:-1], cols[1:])]
    period = statistics.median([tl[i + 1, cols[0]] - tl[i, cols[0]] for i in rows])
    return out, period


# Stamp points per warpgroup, in time order, and the phase each interval ends with. A build stamps
# only the points its kernel has (the two-warpgroup kernel: state 0-6, prep 16-20; the
# three-warpgroup inference kernel, v12 / v13: state 0-3, prep 16, 18-20, output 24-27; v14: state
# 0-3 and output 24-27, no prep). In v13 the state's first phase also issues the u~ GEMM (and waits
# on ring B), prep's "u,w stores" is the -w~ store alone, and the output's ring A refill sits in its
# first phase (after Q S). In v14 the state's first phase is the u~ issue and the ring waits (no
# pfull), its "v~ gemm" phase the S^T K^T GEMM, the S^T hand-off, the f pass and the Au GEMM, and the
# output's "P~v~ gemm" phase also issues the next chunk's Q K^T.
groups = {
    "state": [(0, "top"), (1, "waits(pfull,full)"), (2, "v~ gemm+u"), (3, "convert+gemms"), (5, "combine"),
              (6, "o store wait"), (4, "o tile write+TMA")],
    "prep": [(16, "top"), (17, "full+factors"), (18, "issues"), (19, "u,w stores"), (20, "P store / refills")],
    "out": [(24, "top"), (25, "QK^T, QS, P~ pass"), (26, "P~v~ gemm"), (27, "combine, o store, refill")],
}
tops = {}
for name, pts in groups.items():
    pts = [(c, lab) for c, lab in pts if float(tl[rows.start:rows.stop, c].abs().sum()) > 0]
    if len(pts) < 2:
        continue
    ds, per = deltas([c for c, _ in pts])
    tops[name] = pts[0][0]
    print(f"{name:5s} period {per:.0f} cycles/chunk; phases:", ", ".join(f"{lab}->{v:.0f}" for (_, lab), v in zip(pts[1:], ds)))
for name, c in tops.items():
    if name != "state":
        print(f"{name} top minus state top (cycles, chunk 20):", float(tl[20, c] - tl[20, 0]))
