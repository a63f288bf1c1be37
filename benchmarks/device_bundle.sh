#!/bin/bash
# Build, on the (GPU-less) build machine, what benchmarks/fused_fwd3_check.sh needs on the GPU
# machine, in one folder to name in the device call's carry (64 MiB in all):
#   BUNDLE/wheel/  a cp312 wheel of this checkout                        (~2 MB)
#   BUNDLE/dbg3.so the stamped timeline build of fused_fwd3             (~1 MB; needs TileLang)
#   BUNDLE/dbg14.so the same for fused_fwd_v14 (opt-in: FLASHGDN_FUSED_FWD_V14=1) (~1 MB)
#   BUNDLE/anch.tar.xz FLA + FlashQLA + its TileLang, installed for cp312 (~45 MB; optional)
# Usage, from the repo root:
#   PY312="python3.12" TL_PYTHON=<python with tilelang> CUDA_HOME=<CUDA 13> \
#     ANCHOR_WHEELS=<dir from anchor_wheels.sh> bash benchmarks/device_bundle.sh BUNDLE
set -euo pipefail
bundle=${1:?usage: device_bundle.sh BUNDLE}
py312=${PY312:-python3.12}
mkdir -p "$bundle/wheel"
rm -f "$bundle"/wheel/*.whl
$py312 -m pip wheel . --no-deps -w "$bundle/wheel" -q
if [ -n "${TL_PYTHON:-}" ]; then
  "$TL_PYTHON" build_tools/debug_kernel.py --kernels-dir kernels_tl --module fused_fwd --symbol dbg3 \
    --kw dtype=bfloat16 --kw three_wg=1 --kw timeline=1 --out "$bundle/dbg3.so" \
    --nvcc "${CUDA_HOME:?set CUDA_HOME for the timeline build}/bin/nvcc"
  "$TL_PYTHON" build_tools/debug_kernel.py --kernels-dir kernels_tl --module fused_fwd --symbol dbg14 \
    --kw dtype=bfloat16 --kw v14=1 --kw timeline=1 --out "$bundle/dbg14.so" --nvcc "$CUDA_HOME/bin/nvcc"
  rm -f "$bundle/dbg3.cu" "$bundle/dbg14.cu"
fi
if [ -n "${ANCHOR_WHEELS:-}" ]; then
  site=$(mktemp -d)
  $py312 -m pip install -q --no-deps --no-index --no-compile --target "$site" \
    "$ANCHOR_WHEELS"/a/*.whl "$ANCHOR_WHEELS"/b/*.whl
  tar cf - -C "$site" . | xz -9 -T2 > "$bundle/anch.tar.xz"
  rm -rf "$site"
fi
du -sh "$bundle"/*
