#!/bin/bash
# One device call's worth of checks for the three-warpgroup inference kernel (fused_fwd v12, the
# default; FLASHGDN_FUSED_FWD_3WG=0 selects v11; docs/perf-notes.md), most important first so that
# a call cut short still answers the first questions. Run from the repo root on the GPU machine:
#
#   bash benchmarks/fused_fwd3_check.sh BUNDLE       (BUNDLE made by benchmarks/device_bundle.sh)
#
# BUNDLE/wheel/*.whl is installed; BUNDLE/dbg3.so (the stamped v12 build) adds the timeline;
# BUNDLE/anch.tar.xz (FLA + FlashQLA, installed) adds the side-by-side against FlashQLA, whose JIT
# is warmed up in the background on the CPU cores while flashgdn's tests run. BUNDLE/wheel_base/
# (optional: an older wheel) joins step 2 as tag base_v11, for kernels other than fused_fwd.
#   1. tests/test_gpu_fused_fwd3.py: each switch setting selects its kernel; the forward suite through v11
#   2. benchmarks/fwd_kernels.py with the switch off / on (tags v11 / v12), alternated twice
#   3. the v12 timeline at (1,8k,16,64)
#   4. bench_fwd.py --libs flashgdn,flashqla --check, switch on, then off
#   5. the rest of the GPU suite
#   6. bench_fwdbwd.py --libs flashgdn, switch on, then off
#   7. benchmarks/fit_cp_model.py with the switch on (the CP cost model refit for v12)
# About 8-9 minutes: give the call its 600 s. Writes $OUT/check.log and the JSON files under $OUT when OUT is set.
set -u
bundle=${1:?usage: fused_fwd3_check.sh BUNDLE}
out=${OUT:-/tmp/fused_fwd3_check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
site=/tmp/fgdn_site anch=/tmp/anch_site base=/tmp/fgdn_base
t0=$(date +%s); stamp() { echo "[check] $1 at $(( $(date +%s) - t0 )) s"; }
{
python3 -m pip install -q --upgrade --no-deps --no-index --no-compile --target $site "$bundle"/wheel/*.whl 2>&1 | grep -v WARN
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
if [ -d "$bundle/wheel_base" ]; then
  python3 -m pip install -q --upgrade --no-deps --no-index --no-compile --target $base "$bundle"/wheel_base/*.whl 2>&1 | grep -v WARN
fi
export PYTHONPATH=$site
if [ -f "$bundle/anch.tar.xz" ]; then
  mkdir -p $anch && xz -dc "$bundle/anch.tar.xz" | tar xf - -C $anch
  for i in 0 1 2 3; do
    PYTHONPATH=$site:$anch timeout 300 python3 benchmarks/warm_flashqla.py $i > "$out/warm$i.log" 2>&1 &
  done
fi
stamp "installed"
(cd tests && timeout 150 python3 -m pytest -q -p no:cacheprovider test_gpu_fused_fwd3.py 2>&1 | tail -8)
stamp "v12 tests"
for round in 1 2; do
  FLASHGDN_FUSED_FWD_3WG=0 timeout 60 python3 benchmarks/fwd_kernels.py v11 2>&1 | tail -4
  FLASHGDN_FUSED_FWD_3WG=1 timeout 60 python3 benchmarks/fwd_kernels.py v12 2>&1 | tail -4
  if [ -d "$bundle/wheel_base" ]; then
    FLASHGDN_FUSED_FWD_3WG=0 PYTHONPATH=$base timeout 60 python3 benchmarks/fwd_kernels.py base_v11 2>&1 | tail -4
  fi
done
stamp "A/B"
if [ -f "$bundle/dbg3.so" ]; then
  timeout 40 python3 benchmarks/timeline.py "$bundle/dbg3.so" dbg3 1 8192 16 64 2>&1 | tail -6
  stamp "timeline"
fi
if [ -f "$bundle/anch.tar.xz" ]; then
  wait; grep -h "^warm" "$out"/warm*.log
  for s in 1 0; do
    FLASHGDN_FUSED_FWD_3WG=$s PYTHONPATH=$site:$anch timeout 100 python3 benchmarks/bench_fwd.py \
      --libs flashgdn,flashqla --check --json "$out/fwd_sidebyside_3wg$s.json" 2>&1 | tail -6
  done
  stamp "side by side"
fi
(cd tests && timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider --ignore=test_gpu_fused_fwd3.py . 2>&1 | tail -6)
stamp "suite"
for s in 1 0; do
  FLASHGDN_FUSED_FWD_3WG=$s timeout 60 python3 benchmarks/bench_fwdbwd.py --libs flashgdn 2>&1 | tail -5
done
stamp "training step"
FLASHGDN_FUSED_FWD_3WG=1 timeout 120 python3 benchmarks/fit_cp_model.py --json "$out/cp_fit_3wg1.json" 2>&1 | grep -v " cp="
stamp "cp fit"
} 2>&1 | tee "$out/check.log"
