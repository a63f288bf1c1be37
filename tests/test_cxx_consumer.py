"""A C++ user of the installed library, as README's "From C/C++" describes it: find_package(flashgdn)
in a CMake project, the public header, linking flashgdn::flashgdn, and the C API's error path at
run time (no GPU needed: a NULL argument is refused before any CUDA call, and fgdn_check_device
reports a missing driver or GPU as a status, not a crash)."""

import os
import shutil
import subprocess

import pytest

import flashgdn

CMAKELISTS = """cmake_minimum_required(VERSION 3.18)
project(flashgdn_consumer LANGUAGES CXX)
find_package(flashgdn REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE flashgdn::flashgdn)
"""

MAIN = r"""#include <flashgdn/flashgdn.h>

#include <cstdio>
#include <cstring>

int main() {
  std::printf("build %s\n", fgdn_build_info());
  fgdn_status st = fgdn_forward(nullptr, nullptr, 0, nullptr);
  std::printf("forward(NULL) -> %d: %s\n", (int)st, fgdn_last_error());
  if (st != FGDN_ERROR_INVALID_ARGUMENT || std::strstr(fgdn_last_error(), "NULL") == nullptr) return 1;
  st = fgdn_check_device(0);
  std::printf("check_device(0) -> %d: %s\n", (int)st, fgdn_last_error());
  return st == FGDN_SUCCESS || st == FGDN_ERROR_UNSUPPORTED_DEVICE ? 0 : 2;
}
"""


def test_cmake_consumer_builds_links_and_runs(tmp_path):
    prefix = flashgdn.cmake_prefix_path()
    if not os.path.exists(os.path.join(prefix, "lib", "libflashgdn.so")):
        pytest.skip("flashgdn is not installed as a built package (no lib/libflashgdn.so)")
    if shutil.which("cmake") is None or (shutil.which("c++") is None and shutil.which("g++") is None):
        pytest.skip("needs cmake and a C++ compiler")
    (tmp_path / "CMakeLists.txt").write_text(CMAKELISTS)
    (tmp_path / "main.cpp").write_text(MAIN)
    build = tmp_path / "build"
    cfg = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}"],
                         capture_output=True, text=True, timeout=300)
    if cfg.returncode != 0 and "CUDAToolkit" in cfg.stdout + cfg.stderr:
        # the header includes cuda_runtime_api.h: consumers need the CUDA toolkit's headers
        pytest.skip("no CUDA toolkit for find_dependency(CUDAToolkit)")
    assert cfg.returncode == 0, cfg.stdout[-3000:] + cfg.stderr[-3000:]
    bld = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, timeout=300)
    assert bld.returncode == 0, bld.stdout[-3000:] + bld.stderr[-3000:]
    run = subprocess.run([str(build / "consumer")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sm_90a" in run.stdout and "args is NULL" in run.stdout, run.stdout
