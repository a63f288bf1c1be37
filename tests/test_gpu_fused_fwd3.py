"""The three-warpgroup inference kernel (fused_fwd v12, `fgdn_fused_fwd3_*`) through the whole
forward suite. The library launches it only when FLASHGDN_FUSED_FWD_3WG=1 is set (read once per
process), so the suite runs again in a child process with the variable set."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, FLASHGDN_FUSED_FWD_3WG="1")

# one forward under the profiler: the switch must actually select the v12 kernel
PROBE = """
import torch, flashgdn
from torch.profiler import profile, ProfilerActivity
from flashgdn.testing import make_inputs
x = make_inputs(1, 200, 2, 4, dtype=torch.bfloat16, device="cuda", gates="decay", seed=0)
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], output_final_state=True)
    torch.cuda.synchronize()
names = [e.key for e in prof.key_averages()]
print("KERNELS", names)
assert any("fused_fwd3" in n for n in names), names
"""


@pytest.mark.gpu
def test_switch_selects_the_three_warpgroup_kernel():
    r = subprocess.run([sys.executable, "-c", PROBE], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.mark.gpu
def test_forward_suite_with_the_three_warpgroup_kernel():
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "test_gpu_forward.py"], cwd=HERE, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
