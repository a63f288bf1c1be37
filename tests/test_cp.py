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
