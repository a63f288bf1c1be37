#!/usr/bin/env python3
"""Developer tool: lower ONE kernel variant with extra build options (e.g. the timeline
instrumentation of fused_fwd) and compile it to a standalone shared library, for experiments
on a GPU machine (ctypes, see benchmarks/timeline.py). Never part of the shipped build.

  debug_kernel.py --module fused_fwd --symbol dbg_fused_fwd --kw dtype=bfloat16 \
                  --kw timeline=1 --out .devrun/dbg_fused_fwd.so
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels-dir", default=os.path.join(os.path.dirname(__file__), "..", "kernels_tl"))
    ap.add_argument("--module", required=True)
    ap.add_argument("--symbol", required=True)
    ap.add_argument("--kw", action="append", default=[], help="builder keyword, name=value (ints parsed)")
    ap.add_argument("--pass-config", action="append", default=[],
                    help="extra TileLang pass config for this build, key=0|1 (e.g. tl.disable_safe_memory_legalize=1)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--nvcc", default="nvcc")
    a = ap.parse_args()
    kwargs = {}
    for item in a.kw:
        k, v = item.split("=", 1)
        kwargs[k] = int(v) if v.isdigit() else v
    kdir = os.path.abspath(a.kernels_dir)
    mod = generate._import(kdir, a.module)
    func = mod.build(**kwargs).with_attr("global_symbol", a.symbol)
    pass_configs = dict(getattr(mod, "PASS_CONFIGS", {}))
    for item in a.pass_config:
        k, v = item.split("=", 1)
        pass_configs[k] = bool(int(v))
    src, _ = generate.make_translation_unit(a.symbol, generate._lower(func, pass_configs))
    cu = a.out[:-3] + ".cu"
    with open(cu, "w") as f:
        f.write(src)
    import tilelang
    root = os.path.dirname(tilelang.__file__)
    # the module's own fast-math setting, as the package build (cmake/FlashgdnKernels.cmake) uses
    # it: a debug build that differs there times a different kernel (IEEE division and expf
    # against their fast forms)
    fast = ["--use_fast_math"] if generate._fast_math(mod) else []
    cmd = [a.nvcc, "-std=c++20", "-w", "-O3", *fast, "-lineinfo", "--shared", "-Xcompiler", "-fPIC",
           "-gencode", "arch=compute_90a,code=sm_90a", f"-I{root}/src", f"-I{root}/3rdparty/cutlass/include",
           cu, "-o", a.out]
    # the nvcc wheel keeps its libraries in <root>/lib, where nvcc.profile expects lib64
    wheel_lib = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__import__("shutil").which(a.nvcc) or a.nvcc))), "lib")
    if os.path.isdir(wheel_lib):
        cmd.append(f"-L{wheel_lib}")
    subprocess.run(cmd, check=True)
    print(a.out)


if __name__ == "__main__":
    main()
