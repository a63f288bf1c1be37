"""The inference kernel switches. The forward launches the three-warpgroup kernel (fused_fwd3, v13,
`fgdn_fused_fwd3_*`) unless FLASHGDN_FUSED_FWD_3WG=0 is set (read once per process), which selects
the two-warpgroup v11 kernel (`fgdn_fused_fwd_*`) instead; FLASHGDN_FUSED_FWD_V14=1 selects v14
(`fgdn_fused_fwd_v14_*`, opt-in until measured) ahead of both. The main suite covers the default;
here each setting must select its kernel, and the forward suite runs again through v11 and through
v14 in child processes (the backward suite too through v14, which also brings its state pass)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

# one forward under the profiler: which inference kernel did it launch?
PROBE = """
import torch, flashgdn
from torch.profiler import profile, ProfilerActivity
from flashgdn.testing import make_inputs
x = make_inputs(1, 200, 2, 4, dtype=torch.bfloat16, device="cuda", gates="decay", seed=0)
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], output_final_state=True)
    torch.cuda.synchronize()
names = [e.key for e in prof.key_averages() if "fused_fwd" in e.key]
preps = [e.key for e in prof.key_averages() if "chunk_prep" in e.key]
print("KERNELS", names, preps)
assert len(names) == 1 and len(preps) == 1, (names, preps)
# v14's forward stores no Aw tile (chunk_prep_au); the others need it
print(("V14" if "fused_fwd_v14" in names[0] else "3WG" if "fused_fwd3" in names[0] else "2WG")
      + (" au" if "chunk_prep_au" in preps[0] else " full"))
"""


def _env(setting, v14=None):
    env = dict(os.environ)
    env.pop("FLASHGDN_FUSED_FWD_3WG", None)
    env.pop("FLASHGDN_FUSED_FWD_V14", None)
    if setting is not None:
        env["FLASHGDN_FUSED_FWD_3WG"] = setting
    if v14 is not None:
        env["FLASHGDN_FUSED_FWD_V14"] = v14
    return env


@pytest.mark.gpu
@pytest.mark.parametrize("setting, v14, expected", [(None, None, "3WG full"), ("1", None, "3WG full"),
                                                 ("0", None, "2WG full"), (None, "1", "V14 au"),
                                                 ("0", "1", "V14 au"), (None, "0", "3WG full")])
def test_switch_selects_the_inference_kernel(setting, v14, expected):
    r = subprocess.run([sys.executable, "-c", PROBE], env=_env(setting, v14), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == expected, r.stdout[-2000:]


@pytest.mark.gpu
def test_forward_suite_with_the_two_warpgroup_kernel():
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "test_gpu_forward.py"], cwd=HERE, env=_env("0"), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.gpu
def test_forward_suite_with_v14():
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "test_gpu_forward.py"], cwd=HERE, env=_env(None, "1"), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.gpu
def test_backward_suite_with_v14():
    """FLASHGDN_FUSED_FWD_V14=1 also moves the backward's state pass (fused_fwd_states_v14) and the
    exact CP pass 1 (cp_summary_v14) to v14's state loop."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "test_gpu_backward.py"], cwd=HERE, env=_env(None, "1"), capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
