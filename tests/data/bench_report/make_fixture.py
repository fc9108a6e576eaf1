"""Build ``tests/data/bench_report/results.json``: synthetic records that exercise every report
table. Run from the repository root. The ``report.md`` beside it is what gradkit rendered from
it (first before the report tables moved to ``gradkit.bench.tables``); regenerate it only for
a deliberate change of the report's layout.
"""

import math
import random

from gradkit.bench.results import BenchResults, Record, RunSettings, TaskInfo, Verdict

rng = random.Random(0)
methods = ["sgd", "adam", "lion|pipe", "<b>evil</b>"]
tasks = {
    "quad": TaskInfo(
        "a quadratic with known optimum", "loss", 40, True, ("dist",), {"dist": False}, optimum=0.5
    ),
    "grid": TaskInfo(
        "a task with an lr grid and a held-out loss",
        "validation loss",
        40,
        False,
        ("state_mib",),
        {"state_mib": False},
    ),
    "cls": TaskInfo("classification", "cross-entropy", 30, False, ("w_norm",), {}),
}
records = []
for mi, m in enumerate(methods):
    # deterministic: one run; loss decays over 4 decades
    rate = 0.1 + 0.05 * mi
    curve = tuple(0.5 + 10 * math.exp(-rate * k) for k in range(0, 41, 2))
    records.append(
        Record(
            "synthetic",
            "quad",
            m,
            0,
            curve[-1],
            curve,
            0.01 * (mi + 1),
            40,
            curve_stride=2,
            metrics={"dist": curve[-1] - 0.5},
            hyperparams={"lr": 0.1 * (mi + 1), "betas": [0.9, 0.999], "extra": {"a": [1]}},
        )
    )
    for variant, lr in (("lr=1e-3", 1e-3), ("lr=1e-2", 1e-2)):
        for seed in (0, 1):
            base = 3.0 - mi * 0.2 - (0.3 if lr == 1e-2 else 0.0) + 0.05 * seed
            curve = tuple(base + 2 * math.exp(-0.1 * k) + 0.01 * rng.random() for k in range(40))
            ev = tuple((k, base + 0.1 + 1.5 * math.exp(-0.1 * k)) for k in (0, 10, 20, 30, 40))
            status, final, err = "ok", ev[-1][1], None
            if m == "sgd" and variant == "lr=1e-2" and seed == 1:
                status, final, err, curve, ev = "diverged", None, None, (*curve[:10], None), ev[:2]
            records.append(
                Record(
                    "synthetic",
                    "grid",
                    m,
                    seed,
                    final,
                    curve,
                    0.2 + 0.01 * seed,
                    40,
                    metrics={"state_mib": float(mi)},
                    hyperparams={"lr": lr},
                    status=status,
                    error=err,
                    variant=variant,
                    eval_curve=ev,
                )
            )
    for seed in (0, 1, 2):
        if m == "<b>evil</b>" and seed == 2:
            records.append(
                Record(
                    "synthetic",
                    "cls",
                    m,
                    seed,
                    None,
                    (),
                    0.0,
                    1,
                    status="error",
                    error="boom | <script>alert(1)</script>",
                )
            )
            continue
        curve = tuple(2.3 * math.exp(-0.05 * k * (1 + mi)) - 0.1 * rng.random() for k in range(30))
        records.append(
            Record(
                "synthetic",
                "cls",
                m,
                seed,
                curve[-1],
                curve,
                0.5,
                30,
                accuracy=0.5 + 0.1 * mi + 0.01 * seed,
                metrics={"w_norm": None if seed == 1 else 1.0 + mi},
                hyperparams={"lr": 0.01},
            )
        )
verdicts = [
    Verdict("adam beats sgd", "Kingma & Ba, 2015", "holds", "loss 1 vs 2", ("quad",), {"a": 1.0}),
    Verdict(
        "lion | pipes are escaped",
        "Chen et al.",
        "does not hold",
        "<i>html</i> in evidence",
        ("grid",),
    ),
    Verdict("something else", "Nobody", "inconclusive", "diff 0.1, margin 0.2", ("cls",)),
]
res = BenchResults(
    RunSettings("synthetic", tuple(methods), tuple(tasks), (0, 1, 2), None, False, 1),
    {"gradkit": "0.1.0", "torch": "2.x", "numpy": "2.x", "python": "3.11", "platform": "linux"},
    tasks,
    records,
    verdicts,
    created_utc="2026-01-01T00:00:00+00:00",
)
with open("tests/data/bench_report/results.json", "w") as f:
    f.write(res.to_json(indent=None) + "\n")
