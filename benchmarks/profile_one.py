"""One forward call for a profiler to look at (after a warm-up call).

  ncu -k regex:fused_fwd --launch-skip 1 --launch-count 1 python benchmarks/profile_one.py 1 8192 2 8
"""
import sys

import torch

import flashgdn
from flashgdn.testing import make_inputs

B, T, H, HV = (int(a) for a in sys.argv[1:5])
gates = sys.argv[5] if len(sys.argv) > 5 else "slow"
x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates=gates, seed=0)
for _ in range(2):
    flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                                    output_final_state=True)
torch.cuda.synchronize()
