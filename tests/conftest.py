import os
import sys

import pytest
import torch

# Tests import the installed package; fall back to the source tree for the pure-Python parts.
try:
    import flashgdn  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))


def _gpu_skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.cuda.get_device_capability() != (9, 0):
        return f"needs sm_90, found {torch.cuda.get_device_name()}"
    try:
        from flashgdn import _native
        _native.ext()
    except Exception as e:  # noqa: BLE001
        return f"flashgdn extension not available: {e}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "gpu" in item.keywords:
            if not checked:
                reason, checked = _gpu_skip_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| in float64 (0 if both are empty or zero)."""
    x = x.double()
    ref = ref.double()
    den = ref.norm().item()
    num = (x - ref).norm().item()
    return num / den if den > 0 else num


def poison_cuda_allocator(*shapes_dtypes):
    """Fill freshly freed blocks with NaN so outputs allocated next (by the library, through
    torch's caching allocator) start poisoned: an element the kernels skip stays NaN."""
    blocks = [torch.full(shape, float("nan"), dtype=dtype, device="cuda") for shape, dtype in shapes_dtypes]
    del blocks
