#!/bin/bash
# One device call's worth of checks for the opt-in three-warpgroup forward kernel (fused_fwd v12,
# FLASHGDN_FUSED_FWD_3WG=1; docs/perf-notes.md): the GPU suite (its test_gpu_fused_fwd3.py reruns
# the forward suite with the kernel switched on), then the forward and the training step with and
# without it, alternated in fresh processes (the switch is read once per process).
#   PYTHONPATH=<site of the wheel> bash benchmarks/fused_fwd3_check.sh      (from the repo root)
# Writes $OUT/fwdk_{v11,v12}_decay.json (benchmarks/fwd_kernels.py) when OUT is set.
set -u
export PYTHONUNBUFFERED=1
(cd tests && timeout 600 python3 -m pytest -m gpu -q -p no:cacheprovider . 2>&1 | tail -5)
for round in 1 2; do
  FLASHGDN_FUSED_FWD_3WG=0 timeout 120 python3 benchmarks/fwd_kernels.py v11 2>&1 | tail -4
  FLASHGDN_FUSED_FWD_3WG=1 timeout 120 python3 benchmarks/fwd_kernels.py v12 2>&1 | tail -4
done
for round in 1 2; do
  FLASHGDN_FUSED_FWD_3WG=0 timeout 120 python3 benchmarks/bench_fwdbwd.py --libs flashgdn 2>&1 | tail -5
  FLASHGDN_FUSED_FWD_3WG=1 timeout 120 python3 benchmarks/bench_fwdbwd.py --libs flashgdn 2>&1 | tail -5
done
