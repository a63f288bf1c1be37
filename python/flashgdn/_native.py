"""Lazy loading of the native extension, and the checks every GPU op runs first.

``import flashgdn`` never touches the extension or the GPU; the first GPU op imports
``flashgdn._C`` (which loads lib/libflashgdn.so; the CUDA runtime is linked into it, so only
the NVIDIA driver is needed) and checks the device once.
"""

from __future__ import annotations

import functools

import torch

_DTYPE_CODES = {torch.bfloat16: 0, torch.float16: 1, torch.float32: 2}


def dtype_code(dtype: torch.dtype) -> int:
    return _DTYPE_CODES[dtype]


@functools.lru_cache(maxsize=None)
def ext():
    """The extension module, imported on first use."""
    try:
        from . import _C
    except ImportError as e:
        raise RuntimeError(
            "flashgdn's native extension (flashgdn._C) is not available: "
            f"{e}. Build and install the package with `pip install .` (see README.md); "
            "the CPU reference path works without it."
        ) from e
    return _C


@functools.lru_cache(maxsize=None)
def _checked_device(index: int) -> None:
    status, message = ext().check_device(index)
    if status != 0:
        raise RuntimeError(f"flashgdn cannot run on cuda:{index}: {message}")


def require_gpu(device: torch.device) -> None:
    """Raise a RuntimeError that names what is missing unless `device` can run the kernels."""
    if device.type != "cuda":
        raise RuntimeError(f"flashgdn's kernels run on CUDA devices; got a tensor on {device}")
    if not torch.cuda.is_available():
        raise RuntimeError("flashgdn's kernels need an NVIDIA GPU (sm_90, Hopper), but torch sees no CUDA device")
    index = device.index if device.index is not None else torch.cuda.current_device()
    _checked_device(index)


def tma_ready(x: torch.Tensor) -> torch.Tensor:
    """Contiguous and 16-byte aligned: the kernels move q/k/v/o with TMA."""
    x = x.contiguous()
    if x.data_ptr() % 16:
        x = x.clone()
    return x


def stream_handle(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream
