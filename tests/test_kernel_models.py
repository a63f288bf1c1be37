"""CPU models of the inference kernels (no GPU): the hand model of their barrier protocols
(build_tools/fused_fwd3_protocol.py) and the emulation of their bf16 roundings
(benchmarks/emulate_forward_roundings.py). Both stand in for a device run when a kernel's
protocol or its algebra changes, so they are kept passing here."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(rel, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("kernel", ["v13", "v14"])
def test_barrier_protocol_model(kernel):
    proto = _load("build_tools/fused_fwd3_protocol.py", "fused_fwd3_protocol")
    for nch in range(0, 9):
        for seed in range(150):
            proto.run(nch, seed, kernel)


def test_barrier_protocol_model_catches_a_missing_wait():
    """The model is not vacuous: v14 without WG0's wait for the v~^T buffer's release fails it."""
    proto = _load("build_tools/fused_fwd3_protocol.py", "fused_fwd3_protocol")
    orig = proto.programs_v14

    def mutated(nch):
        w0, w1 = orig(nch)
        return [[op for op in w0 if not (op[0] == "wait" and op[1].startswith("vempty"))], w1]

    proto.programs_v14 = mutated
    with pytest.raises(AssertionError):
        for nch in range(3, 9):
            for seed in range(300):
                proto.run(nch, seed, "v14")


@pytest.mark.parametrize("gates, l2", [("decay", True), ("zero", True), ("steep", False)])
def test_v14_roundings_no_worse_than_v13(gates, l2):
    """fused_fwd_v14 rounds ((S^T K^T) diag(f)) where v13 rounded -w~ = Aw K, and reads Au where v13
    read Aw: its o and final-state errors against fp64 must stay within 2% of v13's."""
    emu = _load("benchmarks/emulate_forward_roundings.py", "emulate_forward_roundings")
    r = emu.errors(1024, gates, l2)
    for got, ref in zip(r["xks_au"], r["shipped"]):
        assert got <= 1.02 * ref, (r["xks_au"], r["shipped"])


@pytest.mark.parametrize("T, gates, l2", [(1024, "steep", True), (2048, "zero", True), (2048, "decay", False)])
def test_bwd_v14_roundings_no_worse_than_shipped(T, gates, l2):
    """bwd_dstates_v14 (build's au=True) rounds (dv_new^T Au) diag(f) where bwd_dstates rounded -w:
    its state-gradient, dh0 and dv_new errors against fp64 must stay within 2% of the shipped pass's."""
    emu = _load("benchmarks/emulate_reverse_roundings.py", "emulate_reverse_roundings")
    r = emu.errors(T, gates, l2)
    for got, ref in zip(r["au"], r["shipped"]):
        assert got <= 1.02 * ref, (r["au"], r["shipped"])
