#!/bin/bash
# One device call's worth of checks for the inference kernels (fused_fwd3 = v13, the default;
# FLASHGDN_FUSED_FWD_3WG=0 selects v11, FLASHGDN_FUSED_FWD_V14=1 v14; docs/perf-notes.md), most important first so that
# a call cut short still answers the first questions. Run from the repo root on the GPU machine:
#
#   bash benchmarks/fused_fwd3_check.sh BUNDLE       (BUNDLE made by benchmarks/device_bundle.sh)
#
# BUNDLE/wheel/*.whl is installed; BUNDLE/dbg3.so (the stamped fused_fwd3 build) adds the timeline;
# BUNDLE/anch.tar.xz (FLA + FlashQLA, installed) adds the side-by-side against FlashQLA, whose JIT
# is warmed up in the background on the CPU cores while flashgdn's tests run. BUNDLE/wheel_base/
# (optional: an older wheel) joins step 2.
#   1. tests/test_gpu_fused_fwd3.py: each switch setting selects its kernels; the forward suite through v11
#      and v14, the backward suite through v14 (child processes; ~4-5 minutes)
#   2. benchmarks/fwd_kernels.py with the switch off / on (tags new_3wg0 / new_3wg1; AB_NEW picks
#      the settings, default "0 1"; "v14" in it runs FLASHGDN_FUSED_FWD_V14=1, tag new_v14) and the
#      base wheel (tag base_3wgN, N = BASE_3WG, default 0), alternated twice
#   3. the fused_fwd3 timeline at (1,8k,16,64) (and fused_fwd_v14's when BUNDLE/dbg14.so exists)
#   4. bench_fwd.py --libs flashgdn,flashqla --check, switch on, then off (SBS picks the settings,
#      default "1 0"; "v14" as in AB_NEW)
#   5. the rest of the GPU suite
#   6. bench_fwdbwd.py --libs flashgdn, switch on, then off (STEP_SETTINGS, default "1 0"; "v14" as in AB_NEW)
#   6b. benchmarks/profile_bwd.py --kernels per STEP_SETTINGS setting (only when named: bwdprof)
#   7. benchmarks/fit_cp_model.py with the switch on (the CP cost model refit; CPFIT_SETTING, default 1)
#   8. benchmarks/pipe_profile.sh at (1,8k,16,64) (ncu; only when named in STEPS)
# STEPS (a space-separated list of the names below; default all but "profile") picks the steps:
#   tests ab timeline sidebyside suite step bwdprof cpfit profile   ("suite" with "tests" = the whole GPU suite)
# About 4-5 minutes with the defaults: give the call its 600 s. Writes $OUT/check.log and the JSON files under $OUT when OUT is set.
set -u
bundle=${1:?usage: fused_fwd3_check.sh BUNDLE}
steps=" ${STEPS:-tests ab timeline sidebyside suite step cpfit} "
want() { [[ "$steps" == *" $1 "* ]]; }
out=${OUT:-/tmp/fused_fwd3_check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
site=/tmp/fgdn_site anch=/tmp/anch_site base=/tmp/fgdn_base
t0=$(date +%s); stamp() { echo "[check] $1 at $(( $(date +%s) - t0 )) s"; }
# a switch setting ("0", "1": FLASHGDN_FUSED_FWD_3WG; "v14": FLASHGDN_FUSED_FWD_V14=1) as env words
setting_env() { if [ "$1" = v14 ]; then echo FLASHGDN_FUSED_FWD_V14=1; else echo FLASHGDN_FUSED_FWD_3WG=$1; fi; }
setting_tag() { if [ "$1" = v14 ]; then echo v14; else echo 3wg$1; fi; }
{
python3 -m pip install -q --upgrade --no-deps --no-index --no-compile --target $site "$bundle"/wheel/*.whl 2>&1 | grep -v WARN
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
if [ -d "$bundle/wheel_base" ]; then
  python3 -m pip install -q --upgrade --no-deps --no-index --no-compile --target $base "$bundle"/wheel_base/*.whl 2>&1 | grep -v WARN
fi
export PYTHONPATH=$site
if want sidebyside && [ -f "$bundle/anch.tar.xz" ]; then
  mkdir -p $anch && xz -dc "$bundle/anch.tar.xz" | tar xf - -C $anch
  for i in 0 1 2 3; do
    PYTHONPATH=$site:$anch timeout 300 python3 benchmarks/warm_flashqla.py $i > "/tmp/warm$i.log" 2>&1 &
  done
fi
stamp "installed"
if want tests; then
(cd tests && timeout 420 python3 -m pytest -q -p no:cacheprovider --durations=10 test_gpu_fused_fwd3.py 2>&1 | tail -20)
stamp "switch tests"
fi
if want ab; then
for round in 1 2; do
  for s in ${AB_NEW:-0 1}; do
    env $(setting_env $s) timeout 60 python3 benchmarks/fwd_kernels.py new_$(setting_tag $s) 2>&1 | tail -4
  done
  if [ -d "$bundle/wheel_base" ]; then
    FLASHGDN_FUSED_FWD_3WG=${BASE_3WG:-0} PYTHONPATH=$base timeout 60 python3 benchmarks/fwd_kernels.py \
      base_3wg${BASE_3WG:-0} 2>&1 | tail -4
  fi
done
stamp "A/B"
fi
if want timeline && [ -f "$bundle/dbg3.so" ]; then
  echo "timeline fused_fwd3 (v13)"
  timeout 40 python3 benchmarks/timeline.py "$bundle/dbg3.so" dbg3 1 8192 16 64 2>&1 | tail -6
  if [ -f "$bundle/dbg14.so" ]; then
    echo "timeline fused_fwd_v14"
    timeout 40 python3 benchmarks/timeline.py "$bundle/dbg14.so" dbg14 1 8192 16 64 2>&1 | tail -6
  fi
  stamp "timeline"
fi
if want sidebyside && [ -f "$bundle/anch.tar.xz" ]; then
  wait; grep -h "^warm" /tmp/warm*.log
  for s in ${SBS:-1 0}; do
    env $(setting_env $s) PYTHONPATH=$site:$anch timeout 100 python3 benchmarks/bench_fwd.py \
      --libs flashgdn,flashqla --check --json "$out/fwd_sidebyside_$(setting_tag $s).json" 2>&1 | tail -6
  done
  stamp "side by side"
fi
if want suite; then
(cd tests && timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider --ignore=test_gpu_fused_fwd3.py . 2>&1 | tail -6)
stamp "suite"
fi
if want step; then
# two rounds alternated: one process's state can swing a config (the 1.267 ms of 2026-12-07)
for round in 1 2; do
  for s in ${STEP_SETTINGS:-1 0}; do
    echo "training step, $(setting_env $s), round $round"
    env $(setting_env $s) timeout 60 python3 benchmarks/bench_fwdbwd.py --libs flashgdn 2>&1 | tail -5
  done
done
stamp "training step"
fi
if want bwdprof; then
# the backward's stages per kernel (torch profiler), e.g. fused_fwd_states vs fused_fwd_states_v14
for s in ${STEP_SETTINGS:-1 0}; do
  echo "backward stages, $(setting_env $s)"
  env $(setting_env $s) timeout 120 python3 benchmarks/profile_bwd.py --kernels 2>&1 | tail -60
done
stamp "backward stages"
fi
if want cpfit; then
cs=${CPFIT_SETTING:-1}
env $(setting_env $cs) timeout 120 python3 benchmarks/fit_cp_model.py --json "$out/cp_fit_$(setting_tag $cs).json" 2>&1 \
  | grep -v " cp="
stamp "cp fit"
fi
if want profile; then
OUT=$out bash benchmarks/pipe_profile.sh 1 8192 16 64
stamp "pipe profile"
fi
} 2>&1 | tee "$out/check.log"
