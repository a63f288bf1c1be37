"""The exact context-parallel algebra (transition-product correction) equals the chunked form."""

import pytest
import torch

from flashgdn import reference as R
from flashgdn.reference_cp import chunked_cp_exact
from flashgdn.testing import make_inputs, cu_from_lens


@pytest.mark.parametrize("B,T,HV,lens,seg,gates", [
    (1, 300, 2, None, 1, "slow"), (2, 260, 4, None, 2, "zero"), (1, 1, 1, None, 3, "decay"),
    (1, 400, 2, [1, 0, 200, 199], 2, "slow"),
])
def test_exact_cp_equals_chunked(B, T, HV, lens, seg, gates):
    x = make_inputs(B, T, 1, HV, K=16, V=8, dtype=torch.float64,
                    cu_seqlens=cu_from_lens(lens) if lens else None, gates=gates)
    args = (x["q"], x["k"], x["v"], x["g"], x["beta"])
    kw = dict(initial_state=x["initial_state"], output_final_state=True, cu_seqlens=x["cu_seqlens"])
    o, ht = chunked_cp_exact(*args, seg, **kw)
    o_ref, ht_ref = R.chunked(*args, **kw, dtype=torch.float64)
    assert ((o - o_ref).norm() / o_ref.norm()).item() < 1e-12
    assert ((ht - ht_ref).norm() / ht_ref.norm()).item() < 1e-12
