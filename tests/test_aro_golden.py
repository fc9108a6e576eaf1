"""ARO against a golden trajectory from the official code (issue 11 item 10).

Property tests cannot see a rotation lagged by one step (it is still orthogonal and still
aligned); a 4-step trajectory of the official ``dion`` ARO can. How the data was made is recorded
in ``tests/data/aro_golden_dion.json`` ("provenance").
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from gradkit.optim import ARO

DATA = json.loads(
    (pathlib.Path(__file__).parent / "data" / "aro_golden_dion.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("base", ["sinkhorn", "row_norm", "sign"])
@pytest.mark.parametrize("foreach", [False, True])
def test_aro_follows_the_official_trajectory(base, foreach):
    case = DATA["cases"][base]
    param = torch.nn.Parameter(torch.tensor(case["w0"]))
    # dion's conventions: R acts on the rows (m x m), lr scaled by 0.2·sqrt(max(m, n))
    opt = ARO(
        [param],
        lr=0.02,
        momentum=0.9,
        weight_decay=0.01,
        base=base,
        rotate="rows",
        update_scale="dion_rms_norm",
        foreach=foreach,
    )
    for step, (grad, expected) in enumerate(zip(case["grads"], case["trajectory"], strict=True)):
        param.grad = torch.tensor(grad)
        opt.step()
        state = opt.state[param]
        what = f"{base}, step {step + 1}"
        torch.testing.assert_close(
            param.detach(), torch.tensor(expected["param"]), rtol=1e-5, atol=1e-6, msg=what
        )
        torch.testing.assert_close(
            state["momentum_buffer"], torch.tensor(expected["momentum"]), rtol=1e-5, atol=1e-6
        )
        # the same rotation up to the sign of each column
        ours, theirs = state["rotation"], torch.tensor(expected["rotation"])
        signs = torch.sign((ours * theirs).sum(0))
        torch.testing.assert_close(ours, theirs * signs, rtol=1e-4, atol=1e-5, msg=what)
