"""Wall time of the first forward call of a never-seen shape in a fresh process (after import;
no JIT or compilation of any kind happens at run time). Prints JSON.

  python benchmarks/first_call.py 1 8192 16 64
"""
import json
import sys
import time

t_import = time.perf_counter()
import torch  # noqa: E402

import flashgdn  # noqa: E402
from flashgdn.testing import make_inputs  # noqa: E402

t_import = time.perf_counter() - t_import
B, T, H, HV = (int(a) for a in sys.argv[1:5])
x = make_inputs(B, T, H, HV, dtype=torch.bfloat16, device="cuda", gates="decay", seed=0)
torch.cuda.synchronize()
res = {"shape": [B, T, H, HV], "import_s": round(t_import, 3)}
for rnd in ("first", "second"):
    t0 = time.perf_counter()
    flashgdn.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["initial_state"],
                                    output_final_state=True)
    torch.cuda.synchronize()
    res[f"{rnd}_call_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
print(json.dumps(res))
