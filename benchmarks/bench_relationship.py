"""The gate's reference check under drift: does it tell a changed relationship from a
covariate shift, and does the gate then promote what a user would keep?

For every scenario of the bank (benchmarks/bench_quality.py) and split seed: etl's own
splits; `mlcycle.monitoring.relationship.measure` (the cost of following the present on
reference_test, its bounds, what the gate excuses); then the gate, at its defaults
(confidence 0.95, tolerance auto), between the old forest (fitted on reference train: the
champion a fresh pipeline starts with) and three challengers a user would try by hand
(a forest refit on current train, one on all train rows, HistGradientBoosting on all),
once with the reference check as it was (nothing excused) and once as it is now.

Printed per scenario: the cost and how often it was excused; per challenger the gain on
current_test and on reference_test and how often each gate promoted it; and the
verdicts the issue asks for: under a relationship change the better challenger promoted,
under a covariate shift nothing promoted that is worse on both splits.

The rule was chosen on the generator's scenarios (`bundled`, `full`, `half`, `quarter`,
`covariates`, `relationship`, `small`); `wage` and `weather` (public data with a time
order) and `cars` (vega_datasets' cars, 1970-76 -> 1977-82, miles per gallon: a data set no
other benchmark of the project uses) show it on data it was not chosen on; `cars-year` is
the same file with the year kept as a feature, which separates the two sides (the overlap
rule, `relationship.OVERLAP_FLOOR`).

    .venv/bin/python benchmarks/bench_relationship.py [--seeds 42,7,2024] [--only full,cars]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quality import Scenario, generated, hgb, wage, weather  # noqa: E402

from mlcycle.models.families import rf  # noqa: E402
from mlcycle.monitoring import gate, promotion, relationship  # noqa: E402
from mlcycle.monitoring.evaluate import score  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402

SEEDS = (42, 7, 2024)
SPLITS = ("current_test", "reference_test")
CHOSEN_ON = ("bundled", "full", "half", "quarter", "covariates", "relationship", "small")


def cars(keep_year: bool = False) -> Scenario:
    """vega_datasets' cars: miles per gallon from cylinders, displacement, horsepower,
    weight, acceleration and origin; 1970-76 -> 1977-82 (the fuel crises moved both the
    cars sold and what a given car did per gallon). `keep_year` (`cars-year`): the model
    year kept as a feature, as a user's file has it: it alone tells the two sides apart
    (their overlap is 0), so the side flag measures nothing and the overlap decides."""
    from vega_datasets import local_data

    frame = local_data.cars().dropna(subset=["Miles_per_Gallon"])
    year = frame.pop("Year").dt.year
    if keep_year:
        frame.insert(len(frame.columns) - 1, "Year", year)
    early = year <= 1976
    return Scenario(
        "cars-year" if keep_year else "cars",
        "vega cars, 1970-76 -> 1977-82" + (", the year a feature" if keep_year else ""),
        frame[early].reset_index(drop=True),
        frame[~early].reset_index(drop=True),
        target="Miles_per_Gallon",
        drop="Name",
    )


def splits_of(scenario: Scenario, seed: int, folder: Path):
    ref_path, cur_path = folder / f"{scenario.name}_old.csv", folder / f"{scenario.name}_new.csv"
    scenario.reference.to_csv(ref_path, index=False)
    scenario.current.to_csv(cur_path, index=False)
    data = prepare(
        EtlParams(
            reference=str(ref_path),
            current=str(cur_path),
            target=scenario.target,
            drop_columns=scenario.drop,
            seed=seed,
        )
    )
    return data.schema, data.splits


def gate_decisions(schema, frames, champion, challenger, evidence) -> tuple[bool, bool, dict]:
    """(promoted by the old gate, promoted by the new one, both models' metrics)."""
    metrics = {
        role: score(model, schema, frames) for role, model in (("c", champion), ("x", challenger))
    }
    predictions = {
        role: {s: model.predict(frames[s][schema.features]) for s in SPLITS}
        for role, model in (("c", champion), ("x", challenger))
    }
    intervals = {
        s: gate.paired_bootstrap(
            schema.task,
            frames[s][schema.target].to_numpy(),
            predictions["c"][s],
            predictions["x"][s],
        )
        for s in SPLITS
    }
    old = promotion.decide(schema.task, metrics["c"], metrics["x"], intervals=intervals)
    new = promotion.decide(
        schema.task, metrics["c"], metrics["x"], intervals=intervals, relationship=evidence
    )
    return old.promote, new.promote, metrics


def run(scenario: Scenario, seed: int, folder: Path) -> dict:
    schema, splits = splits_of(scenario, seed, folder)
    frames = dict(splits.items())
    started = time.perf_counter()
    evidence = relationship.measure(schema, frames, seed=seed)
    seconds = time.perf_counter() - started
    both = pd.concat([splits.reference_train, splits.current_train], ignore_index=True)
    params = rf.ForestParams(seed=seed)
    champion = rf.fit(schema, params, splits.reference_train)
    boosted = hgb(schema, seed)
    boosted.fit(both[schema.features], both[schema.target])
    challengers = {
        "forest cur": rf.fit(schema, params, splits.current_train),
        "forest all": rf.fit(schema, params, both),
        "hgb all": boosted,
    }
    primary = PRIMARY[schema.task]
    out = {"evidence": evidence, "seconds": seconds, "challengers": {}}
    for name, model in challengers.items():
        old, new, metrics = gate_decisions(schema, frames, champion, model, evidence)
        gains = {s: metrics["x"][f"{s}_{primary}"] - metrics["c"][f"{s}_{primary}"] for s in SPLITS}
        out["challengers"][name] = {"old": old, "new": new, **gains}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = [*generated(), wage(), weather(), cars(), cars(keep_year=True)]
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; seeds {seeds}"
    )
    print(
        f"{'scenario':<13}{'set':<8}{'cost (median, min..max)':<28}{'excused':<9}"
        f"{'overlap':<9}{'apart':<7}{'fit s':<7}"
        f"{'challenger':<12}{'gain cur':<10}{'gain ref':<10}{'old gate':<10}{'new gate':<10}"
    )
    wrong = []
    for scenario in scenarios:
        with tempfile.TemporaryDirectory() as tmp:
            results = [run(scenario, seed, Path(tmp)) for seed in seeds]
        costs = [r["evidence"].cost for r in results if r["evidence"]]
        excused = sum(bool(r["evidence"] and r["evidence"].changed) for r in results)
        overlap = np.median([r["evidence"].overlap for r in results if r["evidence"]])
        apart = sum(bool(r["evidence"] and r["evidence"].apart) for r in results)
        seconds = np.median([r["seconds"] for r in results])
        head = (
            f"{scenario.name:<13}{'chosen' if scenario.name in CHOSEN_ON else 'unseen':<8}"
            f"{np.median(costs):+.3f} ({min(costs):+.3f}..{max(costs):+.3f}){'':<5}"
            f"{excused}/{len(results):<7}{overlap:<9.2f}{apart}/{len(results):<5}{seconds:<7.1f}"
        )
        for name in results[0]["challengers"]:
            rows = [r["challengers"][name] for r in results]
            cur = np.median([r["current_test"] for r in rows])
            ref = np.median([r["reference_test"] for r in rows])
            old = sum(r["old"] for r in rows)
            new = sum(r["new"] for r in rows)
            print(
                f"{head:<81}{name:<12}{cur:<+10.3f}{ref:<+10.3f}"
                f"{old}/{len(rows):<8}{new}/{len(rows):<8}"
            )
            head = ""
            for r in rows:
                if r["new"] and r["current_test"] < 0 and r["reference_test"] < 0:
                    wrong.append(f"{scenario.name} {name}: promoted, worse on both")
    print("promoted although worse on both splits:", "; ".join(wrong) or "never")


if __name__ == "__main__":
    main()
