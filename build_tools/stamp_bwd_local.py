#!/usr/bin/env python3
"""Developer tool (never part of the shipped build): write a copy of kernels_tl/bwd_local.py whose
full-chunk kernel records a per-phase timeline, for a scratch wheel on a GPU machine.

Thread 0 of every value-head-0 CTA writes clock64() offsets (cycles since the CTA's start) into
its own chunk's dbeta rows: stamp p -> dbeta[t0 + p, 0], p = 1..63 (rows past 63 would be the
next chunk's). Stamps go after every barrier and after the statements you pick by line number -
a GEMM (its stamp is the warpgroup's wait), a T.copy, a T.Parallel pass (after its block), a
reduce or an atomic copy - of the full-chunk path (stamps inside `if last:` blocks are dropped).
The real dbeta of value head 0 is not written. `benchmarks/phase_timeline.py` prints the medians.

  python build_tools/stamp_bwd_local.py --out /tmp/stamped/kernels_tl/bwd_local.py \
      --auto --from-line 300 --legend /tmp/stamped/legend.json
  (copy the repository to /tmp/stamped first, build a wheel from it, run phase_timeline.py
  there with FLASHGDN_STAMP_LEGEND=legend.json)

--auto picks every T.gemm / T.copy / T.Parallel / T.reduce_sum / T.atomic_add line after
--from-line; --lines 327,334,... picks them by hand. docs/perf-notes.md (v8) has what this
found: element-wise passes that were load-exp-store chains.
"""
import argparse
import json
import os

MAX_STAMPS = 63
PICK = ("T.gemm(", "T.copy(", "for i, j in T.Parallel", "T.reduce_sum", "T.atomic_add(d", "for it in T.serial")


def indent(s):
    return len(s) - len(s.lstrip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "kernels_tl", "bwd_local.py"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--legend", required=True)
    ap.add_argument("--from-line", type=int, default=0)
    ap.add_argument("--auto", action="store_true")
    ap.add_argument("--lines", default="")
    a = ap.parse_args()
    src = open(a.src).read().split("\n")
    marks = {int(x) for x in a.lines.split(",") if x}
    for n, ln in enumerate(src, 1):
        st = ln.strip()
        if n > a.from_line and (st.startswith("T.sync_threads()") or (a.auto and st.startswith(PICK))):
            marks.add(n)
    after = {}   # line after which a stamp goes -> (indent, marked line)
    for n in sorted(marks):
        i0 = indent(src[n - 1])
        end = n
        if src[n - 1].strip().startswith(("for ", "if ")):   # after the whole block
            while end < len(src) and (src[end].strip() == "" or indent(src[end]) > i0):
                end += 1
            if end < len(src) and src[end].strip().startswith(("elif", "else")):
                continue                                   # never between an if and its else
        after[end] = (i0, n)
    out, legend, sid = [], [], 1
    for n, ln in enumerate(src, 1):
        out.append(ln)
        if n in after and sid <= MAX_STAMPS:
            i0, orig = after[n]
            out += [" " * i0 + "if not last:", " " * i0 + f"    _stamp(dbeta, t0, hv, tx, {sid}, tst)"]
            legend.append((sid, orig, src[orig - 1].strip()[:70]))
            sid += 1
    s = "\n".join(out)

    def rep(old, new):
        nonlocal s
        if s.count(old) != 1:
            raise SystemExit(f"stamp_bwd_local: anchor not found once: {old.strip()[:60]!r}")
        s = s.replace(old, new)

    rep('NAME = "bwd_local"', '''@T.macro
def _stamp(dbeta, t0, hv, tx, p, t_start):
    if hv == 0 and tx == 0:
        dbeta[t0 + p, 0] = T.cast(T.call_extern("int64", "clock64") - t_start[0], "float32")


NAME = "bwd_local"''')
    rep("            if seq_id >= 0:\n                # ---- loads", '''            tst = T.alloc_local((1,), "int64")
            tst[0] = T.call_extern("int64", "clock64")
            if seq_id >= 0:
                # ---- loads''')
    rep("                        dbeta[t0 + tx, hv] = db_s[tx]", '''                        if last or hv > 0:
                            dbeta[t0 + tx, hv] = db_s[tx]''')
    with open(a.out, "w") as f:
        f.write(s)
    with open(a.legend, "w") as f:
        json.dump(legend, f)
    print(f"{len(legend)} stamps -> {a.out}")


if __name__ == "__main__":
    main()
