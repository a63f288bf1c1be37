#!/bin/bash
# Where the forward's two big kernels spend their SM: one ncu profile each (the second forward call
# of benchmarks/profile_one.py) with the throughput, pipe, shared-memory, warp-state and source
# sections, plus the tensor-pipe and shared-wavefront counters. The question it answers: is a kernel
# bound by a shared pipe (tensor cores, shared memory / LSU) or by waits between its warpgroups.
#
#   bash benchmarks/pipe_profile.sh [B T H HV]        (default 1 8192 16 64; on the GPU machine)
#   KERNELS="fused_fwd3" SOURCE=1 bash benchmarks/pipe_profile.sh     (one kernel, plus its SASS table)
#
# Full reports go to $OUT/ncu_<kernel>.txt (or /tmp/pipe_profile); the key lines are printed. With
# SOURCE=1 the per-instruction SASS table (stall samples, shared wavefronts) goes to
# $OUT/ncu_<kernel>_sass.csv.xz. ncu runs with --clock-control none (the machine's clocks are left alone).
set -u
out=${OUT:-/tmp/pipe_profile}; mkdir -p "$out"
shape=${*:-1 8192 16 64}
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$ncu_bin" ]; then echo "[pipe_profile] no ncu on this machine"; exit 0; fi
for kern in ${KERNELS:-fused_fwd3 chunk_prep}; do
  rep=/tmp/pipe_profile_$kern
  timeout 200 "$ncu_bin" --clock-control none -k "regex:$kern" --launch-skip 1 --launch-count 1 -f -o "$rep" \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section Occupancy --section WarpStateStats \
    --section InstructionStats --section SourceCounters \
    --metrics "regex:sm__pipe_tensor_op.*cycles_active.avg.pct_of_peak_sustained_active,regex:sm__inst_executed_pipe_.*sum.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,smsp__inst_executed.sum,sm__cycles_elapsed.avg,regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio" \
    python3 benchmarks/profile_one.py $shape decay > "$out/ncu_${kern}_run.log" 2>&1
  echo "[pipe_profile] $kern at $shape (rc $?)"
  "$ncu_bin" -i "$rep.ncu-rep" --print-details all > "$out/ncu_$kern.txt" 2>&1
  tail -3 "$out/ncu_${kern}_run.log" >> "$out/ncu_$kern.txt"; rm -f "$out/ncu_${kern}_run.log"
  grep -E "Duration|SM Frequency|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Cache Throughput|Executed Ipc|Issue Slots Busy|SM Busy|Mem Busy|Max Bandwidth|Mem Pipes Busy|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|pipe_tensor_op_hmma_cycles|wavefronts_mem_shared|bank_conflicts|smsp__inst_executed.sum|sm__cycles_elapsed|issue_stalled_.*(barrier|long_score|short_score|mio|wait|math|dispatch|lg_thr|tex|membar|sleep|selected|not_sel|no_inst|branch|drain|misc)|==ERR" \
    "$out/ncu_$kern.txt" | head -60
  if [ "${SOURCE:-0}" = 1 ]; then
    "$ncu_bin" -i "$rep.ncu-rep" --page source --print-source sass --csv 2> /dev/null | xz -6 > "$out/ncu_${kern}_sass.csv.xz"
    echo "[pipe_profile] $kern SASS table: $(xz -dc "$out/ncu_${kern}_sass.csv.xz" | wc -l) lines"
  fi
done
