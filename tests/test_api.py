"""Public API on CPU: input validation (errors name the argument) and the reference path."""

import pytest
import torch

import flashgdn
from flashgdn import reference as R
from flashgdn.testing import make_inputs

from conftest import rel_err


def base(**over):
    x = make_inputs(1, 70, 2, 4, K=16, V=8, dtype=torch.float32, seed=0)
    args = dict(q=x["q"], k=x["k"], v=x["v"], g=x["g"], beta=x["beta"], initial_state=x["initial_state"],
                output_final_state=True)
    args.update(over)
    return args


def call(**kw):
    return flashgdn.chunk_gated_delta_rule(**kw)


@pytest.mark.parametrize("field,value,exc,needle", [
    ("q", "not a tensor", TypeError, "q must be a torch.Tensor"),
    ("k", torch.zeros(1, 70, 2, 16, dtype=torch.int32), TypeError, "k must be a floating-point"),
    ("v", torch.zeros(1, 70, 4, 8, 1), ValueError, "v must have 4 dims"),
    ("g", torch.zeros(1, 70, 3), ValueError, "g must have shape"),
    ("beta", torch.zeros(1, 69, 4), ValueError, "beta must have shape"),
    ("k", torch.zeros(1, 70, 2, 15), ValueError, "k must have q's shape"),
    ("v", torch.zeros(1, 70, 3, 8), ValueError, "HV=3 must be a positive multiple"),
    ("v", torch.zeros(1, 71, 4, 8), ValueError, "v must be [B, T, HV, V]"),
    ("q", torch.zeros(1, 70, 2, 16, dtype=torch.float64), TypeError, "q, k and v must share a dtype"),
    ("initial_state", torch.zeros(1, 4, 16, 9), ValueError, "initial_state must have shape"),
    ("initial_state", torch.zeros(2, 4, 16, 8), ValueError, "initial_state must have shape"),
    ("initial_state", [1, 2], TypeError, "initial_state must be a torch.Tensor"),
    ("scale", "0.1", TypeError, "scale must be a float"),
    ("output_final_state", 1, TypeError, "output_final_state must be a bool"),
    ("save_wy_factors", 0, TypeError, "save_wy_factors must be a bool"),
])
def test_bad_argument(field, value, exc, needle):
    with pytest.raises(exc, match=needle.replace("[", r"\[").replace("]", r"\]")):
        call(**base(**{field: value}))


@pytest.mark.parametrize("cu,exc,needle", [
    (torch.tensor([0, 30, 20, 70]), ValueError, "non-decreasing"),
    (torch.tensor([1, 70]), ValueError, "must start at 0"),
    (torch.tensor([0, 60]), ValueError, "must end at T=70"),
    (torch.tensor([[0, 70]]), ValueError, "cu_seqlens must be 1-D"),
    (torch.tensor([0.0, 70.0]), TypeError, "cu_seqlens must be int32 or int64"),
    ([0, 70], TypeError, "cu_seqlens must be a torch.Tensor"),
])
def test_bad_cu_seqlens(cu, exc, needle):
    with pytest.raises(exc, match=needle):
        call(**base(cu_seqlens=cu, initial_state=None))


def test_batch_with_cu_seqlens_rejected():
    x = make_inputs(2, 8, 1, 1, K=16, V=8, dtype=torch.float32, seed=1)
    with pytest.raises(ValueError, match="batch size must be 1"):
        call(q=x["q"], k=x["k"], v=x["v"], g=x["g"], beta=x["beta"], cu_seqlens=torch.tensor([0, 8]))


def test_initial_state_count_follows_cu_seqlens():
    with pytest.raises(ValueError, match=r"initial_state must have shape \[N, HV, K, V\] = \(3, 4, 16, 8\)"):
        call(**base(cu_seqlens=torch.tensor([0, 10, 10, 70])))


def test_device_mix_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to mix devices")
    a = base()
    a["v"] = a["v"].cuda()
    with pytest.raises(ValueError, match="one device"):
        call(**a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_path_is_the_reference(dtype):
    x = make_inputs(1, 150, 2, 4, K=16, V=8, dtype=dtype, cu_seqlens=[0, 1, 0 + 1, 150], seed=2,
                    normalize_k=False)
    o, s = call(q=x["q"], k=x["k"], v=x["v"], g=x["g"], beta=x["beta"], initial_state=x["initial_state"],
                output_final_state=True, use_qk_l2norm_in_kernel=True, cu_seqlens=x["cu_seqlens"], scale=0.3)
    o64, s64 = R.naive_recurrence(x["q"], x["k"], x["v"], x["g"], x["beta"], scale=0.3,
                                  initial_state=x["initial_state"], output_final_state=True,
                                  use_qk_l2norm_in_kernel=True, cu_seqlens=x["cu_seqlens"], dtype=torch.float64)
    assert o.dtype == dtype and s.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(o, o64) < tol and rel_err(s, s64) < 1e-5


@pytest.mark.parametrize("kw,needle", [
    (dict(cp=0), "cp must be"),
    (dict(cp="Auto"), "cp must be"),
    (dict(cp=True), "cp must be"),
    (dict(cp_tolerance=1.0), "cp_tolerance must be"),
    (dict(cp_tolerance=-1e-6), "cp_tolerance must be"),
    (dict(cp_tolerance="1e-6"), "cp_tolerance must be"),
])
def test_bad_cp_options_rejected_on_every_path(kw, needle):
    # the CPU path has no CP, but a wrong option must not pass silently there either
    with pytest.raises(ValueError, match=needle):
        call(**base(**kw))


def test_no_final_state_returns_none():
    o, s = call(**base(output_final_state=False))
    assert s is None and o.shape == (1, 70, 4, 8)


def test_gpu_only_limits_checked_first_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA tensors")
    x = make_inputs(1, 8, 1, 1, K=64, V=128, dtype=torch.bfloat16, device="cuda", seed=3)
    with pytest.raises(ValueError, match="K = V = 128"):
        call(q=x["q"], k=x["k"], v=x["v"], g=x["g"], beta=x["beta"])
