#!/bin/bash
# Where the forward's two big kernels spend their SM: one ncu profile each (the second forward call
# of benchmarks/profile_one.py) with the throughput, pipe, shared-memory and warp-state sections,
# plus the tensor-pipe and shared-wavefront counters. The question it answers: is a kernel bound
# by a shared pipe (tensor cores, shared memory / LSU) rather than by one warpgroup's chain - the
# reading of fused_fwd v12's timeline, where splitting the work over three warpgroups moved the
# period only from ~3.9k to ~3.4k cycles (docs/perf-notes.md).
#
#   bash benchmarks/pipe_profile.sh [B T H HV]        (default 1 8192 16 64; on the GPU machine)
#
# Full reports go to $OUT/ncu_<kernel>.txt (or /tmp/pipe_profile); the key lines are printed.
set -u
out=${OUT:-/tmp/pipe_profile}; mkdir -p "$out"
shape=${*:-1 8192 16 64}
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$ncu_bin" ]; then echo "[pipe_profile] no ncu on this machine"; exit 0; fi
for kern in fused_fwd3 chunk_prep; do
  timeout 200 "$ncu_bin" -k "regex:$kern" --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section Occupancy --section WarpStateStats \
    --section InstructionStats \
    --metrics "regex:sm__pipe_tensor_op.*cycles_active.avg.pct_of_peak_sustained_active,regex:sm__inst_executed_pipe_.*sum.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__inst_executed.sum,sm__cycles_elapsed.avg" \
    python3 benchmarks/profile_one.py $shape decay > "$out/ncu_$kern.txt" 2>&1
  echo "[pipe_profile] $kern at $shape (rc $?)"
  grep -E "Duration|SM Frequency|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Cache Throughput|Executed Ipc|Issue Slots Busy|SM Busy|Mem Busy|Max Bandwidth|Mem Pipes Busy|Achieved Occupancy|Registers Per|Shared Memory Configuration|Warp Cycles Per Issued|pipe_tensor|pipe_.*pct|wavefronts_mem_shared|bank_conflicts|smsp__inst_executed.sum|sm__cycles_elapsed|Shared (Load|Store)|Stall|==ERR|==WARN" \
    "$out/ncu_$kern.txt" | head -60
done
