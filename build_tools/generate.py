#!/usr/bin/env python3
"""Lower flashgdn's TileLang kernels to CUDA sources for sm_90a (build time only).

For every variant of every kernel module in kernels_tl/ this writes ``<out>/<module>/<symbol>.cu``:
TileLang's device code plus its host wrapper (shared-memory attribute, TMA descriptors,
launch), with the wrapper's generic ``init``/``call``/``get_last_error`` made file-static and a
uniquely named entry point added::

    extern "C" int <symbol>_launch(<buffers as void*>, <ints>, cudaStream_t stream);
    extern "C" const char* <symbol>_last_error(void);

and ``<out>/<module>/<module>_kernels.h`` declaring them for the host launchers in src/.
Files are rewritten only when their text changes, so an edit to one kernel module recompiles
only that module's variants.

  generate.py --kernels-dir kernels_tl --list              # "module symbol fast_math" lines
  generate.py --kernels-dir kernels_tl --out-dir GEN --module chunk_prep
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

ARCH = "sm_90a"


def _modules(kernels_dir: str) -> list[str]:
    names = []
    for f in sorted(os.listdir(kernels_dir)):
        if f.endswith(".py") and f not in ("common.py", "__init__.py"):
            names.append(f[:-3])
    return names


def _import(kernels_dir: str, name: str):
    if kernels_dir not in sys.path:
        sys.path.insert(0, kernels_dir)
    return importlib.import_module(name)


def _fast_math(mod) -> bool:
    import tilelang
    return bool(getattr(mod, "PASS_CONFIGS", {}).get(tilelang.PassConfigKey.TL_ENABLE_FAST_MATH, False))


def _lower(func, pass_configs):
    import tilelang  # noqa: F401  (registers the TileLang passes)
    from tilelang import tvm
    from tilelang.engine.lower import lower
    from tilelang.jit.adapter.wrapper import TLWrapper
    from tvm.target import Target

    target = Target({"kind": "cuda", "arch": ARCH})
    with tvm.transform.PassContext(opt_level=3, config=pass_configs), target:
        art = lower(func, target=target)
    wrapper = TLWrapper(target)
    wrapper.assign_optimized_module(tvm.IRModule({func.attrs["global_symbol"]: func}))
    wrapper.assign_pass_configs(pass_configs)
    wrapper.assign_host_module(art.host_mod)
    wrapper.assign_device_module(art.device_mod)
    return wrapper.wrap(art.kernel_source)


_CALL_RE = re.compile(r'extern "C" TL_EXPORT int call\((.*?)\) \{', re.S)


def _split_params(text: str) -> list[tuple[str, str]]:
    """'bfloat16_t* __restrict__ k, int T, cudaStream_t stream=cudaStreamDefault' ->
    [(type, name), ...]"""
    out = []
    for p in text.split(","):
        p = p.split("=")[0].strip()
        m = re.match(r"(.*?)([A-Za-z_][A-Za-z0-9_]*)$", p)
        ctype, name = m.group(1).strip(), m.group(2)
        out.append((ctype, name))
    return out


# The most dynamic shared memory an sm_90 block may opt in to (227 KB). A kernel that asks for
# more compiles but fails at launch - on a GPU only, so check it here, at build time.
MAX_DYNAMIC_SMEM = 232448
_SMEM_RE = re.compile(r"cudaFuncAttributeMaxDynamicSharedMemorySize,\s*(\d+)")
# Static shared declarations (TileLang's mbarriers) come first and the dynamic buffer starts at its
# own alignment after them: 144 bytes of barriers cost a whole 1 KB next to a 1024-aligned buffer
# (measured: bwd_fused with 231680 dynamic bytes and 9 barriers failed at launch on an H100)
_STATIC_SMEM_RE = re.compile(r"^\s*__shared__\s+(?:__align__\((\d+)\)\s+)?(\w+)\s+\w+\[(\d+)\];", re.M)
_DYN_ALIGN_RE = re.compile(r"extern\s+__shared__\s+__align__\((\d+)\)")
_ELEM_BYTES = {"uint64_t": 8, "float": 4, "int": 4, "uchar": 1, "half_t": 2, "bfloat16_t": 2}


def _static_smem_bytes(source: str) -> int:
    """Shared memory a block of this kernel uses besides its dynamic buffer, as the launch counts it."""
    total = 0
    for align, ty, n in _STATIC_SMEM_RE.findall(source):
        if ty not in _ELEM_BYTES:
            raise RuntimeError(f"static __shared__ array of unknown element type {ty!r}: add its size to _ELEM_BYTES")
        a = int(align) if align else _ELEM_BYTES[ty]
        total = -(-total // a) * a + _ELEM_BYTES[ty] * int(n)
    m = _DYN_ALIGN_RE.search(source)
    if total and m:
        total = -(-total // int(m.group(1))) * int(m.group(1))
    return total


def make_translation_unit(symbol: str, wrapped: str) -> tuple[str, str]:
    """Turn TileLang's wrapped source into one self-contained TU; return (source, declaration)."""
    static = _static_smem_bytes(wrapped)
    for m in _SMEM_RE.finditer(wrapped):
        if int(m.group(1)) + static > MAX_DYNAMIC_SMEM:
            raise RuntimeError(f"{symbol}: asks for {m.group(1)} bytes of dynamic shared memory and {static} of "
                               f"static, more than the {MAX_DYNAMIC_SMEM} an sm_90 block may have (it would "
                               f"fail at launch)")
    # TileLang launches every kernel with programmatic dependent launch allowed: a kernel that
    # does not wait (griddepcontrol.wait) may read its predecessor's outputs before they are
    # written, and one that signals early may let another library's kernel read ours too soon
    # (kernels_tl/common.py, pdl_wait)
    if "ProgrammaticStreamSerialization" in wrapped and "cudaGridDependencySynchronize()" not in wrapped:
        raise RuntimeError(f"{symbol}: launched with programmatic dependent launch allowed but never waits for "
                           f"its predecessor: make common.pdl_wait() the kernel's first statement")
    if "cudaTriggerProgrammaticLaunchCompletion" in wrapped:
        raise RuntimeError(f"{symbol}: signals its dependents early (T.pdl_trigger): a successor from another "
                           f"library may not wait for our outputs")
    m = _CALL_RE.search(wrapped)
    if m is None:
        raise RuntimeError(f"{symbol}: TileLang wrapper has no call() entry point")
    params = _split_params(m.group(1))
    if params[-1][1] != "stream":
        raise RuntimeError(f"{symbol}: unexpected call() signature {params}")
    src = wrapped
    src = src.replace('extern "C" TL_EXPORT const char* get_last_error()', "static const char* get_last_error()")
    src = src.replace('extern "C" TL_EXPORT int init()', "static int init()")
    src = src.replace('extern "C" TL_EXPORT int call(', "static int call(")
    if 'extern "C" TL_EXPORT' in src:
        raise RuntimeError(f"{symbol}: unexpected exported symbol left in the wrapper")
    # tl_templates/cuda/debug.h defines non-inline functions, which collide when several
    # generated TUs link into one library; the kernels print nothing, so leave it out.
    debug_include = "#include <tl_templates/cuda/debug.h>\n"
    body = src.replace(debug_include, "")
    if "debug_print" in body or "device_assert" in body:
        raise RuntimeError(f"{symbol}: kernel uses TileLang debug printing; remove it before shipping")
    src = body

    api_params, call_args = [], []
    for ctype, name in params[:-1]:
        if "*" in ctype:
            api_params.append(f"void* {name}")
            call_args.append(f"({ctype.replace('__restrict__', '').strip()}){name}")
        else:
            api_params.append(f"{ctype} {name}")
            call_args.append(name)
    api_params.append("cudaStream_t stream")
    call_args.append("stream")
    sig = f'int {symbol}_launch({", ".join(api_params)})'
    entry = f"""
// ---- flashgdn entry point (generated by build_tools/generate.py) ----
#include <atomic>
// init() raises the dynamic shared-memory limit, a per-device function attribute:
// run it once for every device this entry point is launched on.
static std::atomic<unsigned long long> flashgdn_inited_devices{{0}};

extern "C" {sig} {{
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) {{
    snprintf(error_buf, ERROR_BUF_SIZE, "cudaGetDevice: %s", cudaGetErrorString(err));
    return -1;
  }}
  const unsigned long long bit = 1ull << (device & 63);
  if (!(flashgdn_inited_devices.load(std::memory_order_acquire) & bit)) {{
    if (init() != 0) return -1;
    flashgdn_inited_devices.fetch_or(bit, std::memory_order_release);
  }}
  return call({", ".join(call_args)});
}}

extern "C" const char* {symbol}_last_error(void) {{ return get_last_error(); }}
"""
    header = f"#include <cuda_runtime.h>\n" + src
    return header + entry, f'extern "C" {sig};\nextern "C" const char* {symbol}_last_error(void);\n'


def _write_if_changed(path: str, text: str) -> bool:
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return False
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def generate_module(kernels_dir: str, out_dir: str, name: str) -> None:
    mod = _import(kernels_dir, name)
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    decls = [f"// Generated by build_tools/generate.py from kernels_tl/{name}.py. Do not edit.\n#pragma once\n#include <cuda_runtime.h>\n"]
    for symbol, kwargs in mod.variants():
        func = mod.build(**kwargs).with_attr("global_symbol", symbol)
        src, decl = make_translation_unit(symbol, _lower(func, getattr(mod, "PASS_CONFIGS", {})))
        changed = _write_if_changed(os.path.join(out_dir, name, f"{symbol}.cu"), src)
        print(f"[flashgdn-gen] {symbol}.cu {'written' if changed else 'unchanged'}", flush=True)
        decls.append(decl)
    _write_if_changed(os.path.join(out_dir, name, f"{name}_kernels.h"), "\n".join(decls))
    # Stamp for the build system: always touched, so the custom command is up to date
    # even when no source text changed (the .cu files keep their times then).
    with open(os.path.join(out_dir, name, "stamp"), "w") as f:
        f.write("ok\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels-dir", required=True)
    ap.add_argument("--out-dir")
    ap.add_argument("--module", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    kernels_dir = os.path.abspath(args.kernels_dir)
    names = args.module or _modules(kernels_dir)
    if args.list:
        for name in names:
            mod = _import(kernels_dir, name)
            fm = int(_fast_math(mod))
            for symbol, _ in mod.variants():
                print(f"{name} {symbol} {fm}")
        return 0
    if not args.out_dir:
        ap.error("--out-dir is required unless --list")
    for name in names:
        generate_module(kernels_dir, os.path.abspath(args.out_dir), name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
