"""A hand model of the inference kernels' barrier protocols (kernels_tl/fused_fwd.py: fused_fwd3 =
v13, three warpgroups; fused_fwd_v14, two): each warpgroup's program written out as waits,
arrivals, buffer writes and buffer reads in program order (a TMA load is a write at issue plus the arrival its barrier expects), run under random
interleavings with skewed warpgroup speeds. It checks: no deadlock; no write to a buffer before
every reader of its previous contents is done; no read of the wrong chunk; no parity wait issued
two phases early (an mbarrier parity wait returns at once if only i - 1 of i + 1 phases have
completed). It models the kernel as written, not the generated code: rerun it after changing a
barrier, a buffer's readers or the order of the loops' steps, and change it with them.

    python build_tools/fused_fwd3_protocol.py        (~30 s; prints "ok" per kernel or raises)
"""
import random


NA, NB = 3, 2       # ring depths, as in fused_fwd.py


class Bar:
    """An mbarrier: `done` phases completed; a waiter names the completion (0-based) it needs."""
    def __init__(s, count): s.count, s.arr, s.done = count, 0, 0

    def arrive(s):
        s.arr += 1
        if s.arr == s.count: s.arr, s.done = 0, s.done + 1


def first_loads(nch):
    """Both rings' first stages, issued by one warpgroup before its loop."""
    W = []
    for j in range(min(nch, NA)):
        W += [("w", f"A{j}", j), ("arrive", f"fullA{j}")]
    for j in range(min(nch, NB)):
        W += [("w", f"B{j}", j), ("arrive", f"fullB{j}")]
    return W


def programs(nch):
    # v13: WG0 forms u~ itself from ring B (v, Au) and refills ring B after its u~ GEMM; WG1 forms
    # -w~ (Aw); WG2 releases ring A after Q S and refills it there; S^T and v~^T hand-offs are
    # double-buffered by chunk parity.
    W0, W1, W2 = [], first_loads(nch), []
    for i in range(nch):
        sa, sb, st = i % NA, i % NB, i % 2
        # WG0
        W0 += [("wait", f"fullB{sb}", i // NB), ("rb", f"B{sb}", i, 0),
               ("wait", "pfull", i), ("wait", f"fullA{sa}", i // NA),
               ("rb", "w_s", i, 0), ("rb", f"A{sa}", i, 0),
               ("re", f"B{sb}", i, 0)]
        if i + NB < nch:
            W0 += [("wait", f"emptyB{sb}", i // NB), ("w", f"B{sb}", i + NB), ("arrive", f"fullB{sb}")]
        if i >= 2: W0 += [("wait", f"sempty{st}", (i - 2) // 2)]
        W0 += [("w", f"sb{st}", i), ("arrive", f"sfull{st}"),
               ("re", "w_s", i, 0), ("arrive", "uempty")]
        if i >= 2: W0 += [("wait", f"vempty{st}", (i - 2) // 2)]
        W0 += [("w", f"vn{st}", i), ("arrive", f"vfull{st}"), ("re", f"A{sa}", i, 0), ("arrive", f"emptyA{sa}")]
        # WG1
        W1 += [("wait", f"fullB{sb}", i // NB), ("wait", f"fullA{sa}", i // NA),
               ("rb", f"B{sb}", i, 1), ("rb", f"A{sa}", i, 1)]
        W1 += [("re", f"A{sa}", i, 1), ("re", f"B{sb}", i, 1), ("arrive", f"emptyA{sa}"), ("arrive", f"emptyB{sb}")]
        if i >= 1: W1 += [("wait", "uempty", i - 1)]
        W1 += [("w", "w_s", i), ("arrive", "pfull")]
        # WG2
        W2 += [("wait", f"fullA{sa}", i // NA), ("rb", f"A{sa}", i, 2),
               ("wait", f"sfull{st}", i // 2), ("rb", f"sb{st}", i, 2), ("re", f"sb{st}", i, 2), ("arrive", f"sempty{st}"),
               ("re", f"A{sa}", i, 2), ("arrive", f"emptyA{sa}")]
        if i + NA < nch:
            W2 += [("wait", f"emptyA{sa}", i // NA), ("w", f"A{sa}", i + NA), ("arrive", f"fullA{sa}")]
        W2 += [("wait", f"vfull{st}", i // 2), ("rb", f"vn{st}", i, 2), ("re", f"vn{st}", i, 2), ("arrive", f"vempty{st}")]
    return [W0, W1, W2]

def programs_v14(nch):
    # v14: two warpgroups. WG0 (the state) issues both rings' first loads, reads ring A (k) and
    # ring B (v, Au: its only reader) and refills ring B under its update GEMM; the output
    # warpgroup (WG1 here, "WG2" in the kernel's comments) releases ring A after Q S and refills
    # it there; S^T and v~^T hand-offs are double-buffered by chunk parity.
    W0, W1 = first_loads(nch), []
    for i in range(nch):
        sa, sb, st = i % NA, i % NB, i % 2
        # WG0: u~ GEMM (B), Y = S^T K^T (A), S^T hand-off, (Y diag(f)) Au^T (B), update (A), v~^T hand-off
        W0 += [("wait", f"fullB{sb}", i // NB), ("rb", f"B{sb}", i, 0),
               ("wait", f"fullA{sa}", i // NA), ("rb", f"A{sa}", i, 0)]
        if i >= 2: W0 += [("wait", f"sempty{st}", (i - 2) // 2)]
        W0 += [("w", f"sb{st}", i), ("arrive", f"sfull{st}"), ("re", f"B{sb}", i, 0)]
        if i >= 2: W0 += [("wait", f"vempty{st}", (i - 2) // 2)]
        W0 += [("w", f"vn{st}", i), ("arrive", f"vfull{st}")]
        if i + NB < nch:
            W0 += [("w", f"B{sb}", i + NB), ("arrive", f"fullB{sb}")]
        W0 += [("re", f"A{sa}", i, 0), ("arrive", f"emptyA{sa}")]
        # output warpgroup (v14b: chunk i + 1's Q K^T is issued behind chunk i's P~ v~, so its
        # read of ring A's next stage begins before chunk i's v~^T is released)
        if i == 0:
            W1 += [("wait", f"fullA{sa}", 0), ("rb", f"A{sa}", 0, 1)]
        W1 += [("wait", f"sfull{st}", i // 2), ("rb", f"sb{st}", i, 1), ("re", f"sb{st}", i, 1), ("arrive", f"sempty{st}"),
               ("re", f"A{sa}", i, 1), ("arrive", f"emptyA{sa}")]
        if i + NA < nch:
            W1 += [("wait", f"emptyA{sa}", i // NA), ("w", f"A{sa}", i + NA), ("arrive", f"fullA{sa}")]
        W1 += [("wait", f"vfull{st}", i // 2), ("rb", f"vn{st}", i, 1)]
        if i + 1 < nch:
            sn = (i + 1) % NA
            W1 += [("wait", f"fullA{sn}", (i + 1) // NA), ("rb", f"A{sn}", i + 1, 1)]
        W1 += [("re", f"vn{st}", i, 1), ("arrive", f"vempty{st}")]
    return [W0, W1]

READERS_V13 = {"w_s": {0}, "sb0": {2}, "sb1": {2}, "vn0": {2}, "vn1": {2}}
for s in range(NA): READERS_V13[f"A{s}"] = {0, 1, 2}
for s in range(NB): READERS_V13[f"B{s}"] = {0, 1}

READERS_V14 = {"sb0": {1}, "sb1": {1}, "vn0": {1}, "vn1": {1}}
for s in range(NA): READERS_V14[f"A{s}"] = {0, 1}
for s in range(NB): READERS_V14[f"B{s}"] = {0}

def run(nch, seed, kernel="v13"):
    rnd = random.Random(seed)
    v14 = kernel == "v14"
    READERS = READERS_V14 if v14 else READERS_V13
    bars = {} if v14 else {"pfull": Bar(1), "uempty": Bar(1)}
    for p in range(2):
        for n in ("sfull", "sempty", "vfull", "vempty"): bars[f"{n}{p}"] = Bar(1)
    for s in range(NA): bars[f"fullA{s}"], bars[f"emptyA{s}"] = Bar(1), Bar(2 if v14 else 3)
    for s in range(NB): bars[f"fullB{s}"], bars[f"emptyB{s}"] = Bar(1), Bar(1)
    content = {}            # buf -> chunk
    pending = {}            # buf -> set of readers that still must read (begin..end) the current content
    reading = {}            # buf -> set of readers between rb and re
    progs = programs_v14(nch) if v14 else programs(nch)
    nw = len(progs)
    pc = [0] * nw
    wts = [rnd.random() ** 3 + 1e-3 for _ in range(nw)]   # skewed speeds: one warpgroup may run far ahead
    while True:
        ready = []
        for w in range(nw):
            if pc[w] >= len(progs[w]): continue
            op = progs[w][pc[w]]
            if op[0] == "wait":
                # a parity wait for completion i returns early if only i - 1 completions happened
                d = bars[op[1]].done
                assert not (d < op[2] and (d - op[2]) % 2 == 1), f"parity alias: WG{w} waits {op[1]} #{op[2]} with {d} done (nch={nch}, seed={seed})"
            if op[0] == "wait" and not bars[op[1]].done > op[2]: continue
            ready.append(w)
        if not ready:
            if all(pc[w] >= len(progs[w]) for w in range(nw)): return
            raise RuntimeError(f"deadlock nch={nch} seed={seed} at {[progs[w][pc[w]] if pc[w] < len(progs[w]) else None for w in range(nw)]}")
        w = rnd.choices(ready, weights=[wts[x] for x in ready])[0]
        op = progs[w][pc[w]]; pc[w] += 1
        if op[0] == "arrive":
            bars[op[1]].arrive()
        elif op[0] == "w":
            buf, c = op[1], op[2]
            if buf in content:
                assert not reading.get(buf), f"write {buf}:{c} while {reading[buf]} read {content[buf]} (seed {seed})"
                assert not pending.get(buf), f"write {buf}:{c} before {pending[buf]} read {content[buf]} (seed {seed})"
            content[buf] = c
            pending[buf] = set(READERS[buf])
            reading[buf] = set()
        elif op[0] == "rb":
            buf, c, r = op[1], op[2], op[3]
            assert content.get(buf) == c, f"WG{r} reads {buf} expecting {c}, holds {content.get(buf)} (seed {seed})"
            reading[buf].add(r)
        elif op[0] == "re":
            buf, c, r = op[1], op[2], op[3]
            assert content.get(buf) == c
            reading[buf].discard(r); pending[buf].discard(r)

if __name__ == "__main__":
    for kernel in ("v13", "v14"):
        for nch in range(0, 12):
            for seed in range(3000):
                run(nch, seed, kernel)
        print(f"{kernel} ok: no deadlock, no buffer race over 0..11 chunks x 3000 interleavings")
