"""The CP planner (host arithmetic only)."""

import pytest

from flashgdn import cp


def test_cp_planner():
    assert cp.plan([512], 8, None, 132) == 0
    assert cp.plan([512], 8, 1, 132) == 0
    assert cp.plan([512], 8, 4, 132) == 128
    assert cp.plan([512], 8, "auto", 132) > 0            # 16 CTAs on 132 SMs: split
    assert cp.plan([64] * 8, 32, "auto", 132) == 0        # 512 CTAs already
    with pytest.raises(ValueError):
        cp.plan([512], 8, 0, 132)


def test_cp_planner_varlen_and_short():
    assert cp.plan([1], 8, "auto", 132) == 0              # one chunk: nothing to split
    assert cp.plan([], 8, "auto", 132) == 0
    assert cp.plan([0, 512, 3], 8, 8, 132) == 64          # forced: by the longest sequence


def test_cp_planner_rejects_bad_cp_before_any_shortcut():
    for bad in (0, -2, "Auto", 2.0, True):
        with pytest.raises(ValueError, match="cp must be"):
            cp.plan([1], 8, bad, 132)          # one chunk: would return 0 before looking at cp


def test_cp_planner_skips_search_when_grid_is_full():
    assert cp.plan([5000] * 10000, 8, "auto", 132) == 0


def test_cp_model_fit_recovers_known_coefficients():
    """benchmarks/fit_cp_model.py's least squares, on timings made from known coefficients plus a
    per-shape offset, gives those coefficients back (the fit and the planner share model_terms)."""
    import importlib.util
    import pathlib
    import random

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "fit_cp_model.py"
    spec = importlib.util.spec_from_file_location("fit_cp_model", path)
    fitmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fitmod)
    sms, truth = 132, {"CHUNK_US": 1.1, "WARMUP_CHUNKS": 1.5, "SEGMENT_US": 0.8}
    rnd = random.Random(0)
    rows = []
    for B, T, H, HV in fitmod.SHAPES:
        offset = rnd.uniform(20, 200)
        for n in fitmod.SPLITS:
            seg = cp.plan([(T + 63) // 64] * B, HV, n, sms)
            row = {"B": B, "T": T, "H": H, "HV": HV, "cp": n, "seg": seg}
            a, b, c = fitmod.terms(row, sms)
            row["us"] = offset + truth["CHUNK_US"] * (a + truth["WARMUP_CHUNKS"] * b) + truth["SEGMENT_US"] * c
            rows.append(row)
    got, fitted = fitmod.fit(rows, sms)
    for k, v in truth.items():
        assert abs(got[k] - v) < 1e-6 * max(1.0, v), (k, got[k], v)
    assert max(abs(f - r["us"]) for f, r in zip(fitted, rows)) < 1e-6
    # the planner's own prediction is the same model
    assert cp.predicted_us([512], 8, 64, sms) == pytest.approx(
        sum(t * w for t, w in zip(cp.model_terms([512], 8, 64, sms),
                                  (cp.CHUNK_US, cp.CHUNK_US * cp.WARMUP_CHUNKS, cp.SEGMENT_US))))
