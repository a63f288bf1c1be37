"""The installed artifact: sm_90a SASS for every kernel (no PTX), no TileLang needed at run time."""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import flashgdn


def _installed_lib():
    lib = os.path.join(flashgdn.cmake_prefix_path(), "lib", "libflashgdn.so")
    if not os.path.exists(lib):
        pytest.skip("flashgdn is not installed as a built package (no lib/libflashgdn.so)")
    return lib


def _cuobjdump():
    exe = shutil.which("cuobjdump")
    if exe:
        return exe
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13", "cuda_cuobjdump"):
            cand = os.path.join(root, sub, "bin", "cuobjdump")
            if os.path.exists(cand):
                return cand
    pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")


def _kernels():
    manifest = os.path.join(flashgdn.cmake_prefix_path(), "lib", "kernels.txt")
    with open(manifest) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return [sym for _module, sym in rows]


def test_every_kernel_has_sm90a_sass_and_no_ptx():
    lib = _installed_lib()
    exe = _cuobjdump()
    kernels = _kernels()
    assert kernels, "kernels.txt lists no kernels"
    elf = subprocess.run([exe, "--list-elf", lib], capture_output=True, text=True, check=True).stdout
    assert "sm_90a" in elf, elf
    assert all("sm_90a" in line for line in elf.splitlines() if ".cubin" in line), elf
    ptx = subprocess.run([exe, "--list-ptx", lib], capture_output=True, text=True).stdout
    assert ".ptx" not in ptx, f"PTX embedded (would JIT at run time):\n{ptx}"
    usage = subprocess.run([exe, "--dump-resource-usage", lib], capture_output=True, text=True, check=True).stdout
    for sym in kernels:
        assert f"{sym}_kernel" in usage, f"no SASS for {sym}_kernel"


def test_library_needs_no_cuda_shared_libraries():
    lib = _installed_lib()
    needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    for bad in ("libcudart.so", "libcuda.so", "libtorch", "libpython"):
        assert bad not in needed, f"libflashgdn.so links {bad}:\n{needed}"


def test_imports_and_loads_without_tilelang():
    if importlib.util.find_spec("tilelang") is not None:
        pytest.skip("TileLang is installed in this environment; CI runs this in a venv without it")
    _installed_lib()
    code = ("import sys, flashgdn; from flashgdn import _native; "
            "print(_native.ext().build_info()); assert 'tilelang' not in sys.modules and 'tvm' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "sm_90a" in out.stdout


def test_gpu_op_without_gpu_raises_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _installed_lib()
    from flashgdn import _native
    with pytest.raises(RuntimeError, match="NVIDIA GPU|driver"):
        _native.require_gpu(torch.device("cuda", 0))
    status, msg = _native.ext().check_device(0)
    assert status != 0 and msg


def test_gate_vector_rows_agree():
    """The gate-vector table's row count lives in three places (kernels, C header, Python)."""
    import re

    from flashgdn import ops

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    common = os.path.join(root, "kernels_tl", "common.py")
    header = os.path.join(root, "src", "include", "flashgdn", "flashgdn.h")
    if not (os.path.exists(common) and os.path.exists(header)):
        pytest.skip("not run from a source checkout")
    with open(common) as f:
        kernel_rows = int(re.search(r"^GV_ROWS = (\d+)", f.read(), re.M).group(1))
    with open(header) as f:
        header_rows = int(re.search(r"#define FGDN_GATE_VECTOR_ROWS (\d+)", f.read()).group(1))
    assert kernel_rows == header_rows == ops.GATE_VECTOR_ROWS


def _generator():
    """build_tools/generate.py as a module (its checks need no TileLang)."""
    path = os.path.join(os.path.dirname(__file__), "..", "build_tools", "generate.py")
    spec = importlib.util.spec_from_file_location("flashgdn_generate", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_generator_rejects_kernels_over_the_shared_memory_limit():
    """build_tools/generate.py refuses a kernel whose launch would ask for more dynamic shared
    memory than an sm_90 block may have (such a kernel compiles, then fails on the GPU only)."""
    gen = _generator()
    body = ('extern "C" TL_EXPORT int call(float* __restrict__ x, cudaStream_t stream) {\\n'
            "  cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, %d);\\n}\\n")
    gen.make_translation_unit("ok_kernel", body % gen.MAX_DYNAMIC_SMEM)
    with pytest.raises(RuntimeError, match="dynamic shared memory"):
        gen.make_translation_unit("big_kernel", body % (gen.MAX_DYNAMIC_SMEM + 1024))
    # one mbarrier next to a 1024-aligned dynamic buffer takes a whole 1 KB at launch (an H100
    # refused 231680 dynamic bytes with 9 barriers; 230400 had launched)
    barriers = ('__global__ void k() {\n  extern __shared__ __align__(1024) uchar buf_dyn_shmem[];\n'
                '  __shared__ __align__(16) uint64_t bar_mem[1];\n}\n')
    gen.make_translation_unit("ok_kernel", barriers + body % (gen.MAX_DYNAMIC_SMEM - 1024))
    with pytest.raises(RuntimeError, match="static"):
        gen.make_translation_unit("barrier_kernel", barriers + body % (gen.MAX_DYNAMIC_SMEM - 768))


def test_generator_requires_every_kernel_to_wait_for_its_predecessor():
    """TileLang launches every kernel with programmatic dependent launch allowed, so
    build_tools/generate.py refuses a kernel that does not wait for the previous kernel in the
    stream (griddepcontrol.wait) and one that lets its successor start early."""
    gen = _generator()
    launch = ('extern "C" TL_EXPORT int call(float* __restrict__ x, cudaStream_t stream) {\n'
              "  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;\n}\n")
    waits = "__global__ void k() {\n  cudaGridDependencySynchronize();\n}\n"
    gen.make_translation_unit("waits", waits + launch)
    with pytest.raises(RuntimeError, match="never waits"):
        gen.make_translation_unit("no_wait", "__global__ void k() {}\n" + launch)
    with pytest.raises(RuntimeError, match="early"):
        gen.make_translation_unit("trigger", waits.replace("}", "  cudaTriggerProgrammaticLaunchCompletion();\n}")
                                  + launch)
