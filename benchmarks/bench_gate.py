"""How often the promotion gate promotes a challenger that is not better, and one that is.

Each trial draws fresh test rows (`--rows` a split, 400 by default) for current_test and
reference_test, scores a champion and a challenger on both, and asks `promotion.decide`:
  - point: today's rule, on the point estimates;
  - gate: the paired bootstrap at confidence 0.95 (one-sided 95 % bounds on both splits);
  - two-sided: the same resamples read as a two-sided 95 % interval (2.5th percentile);
  - gate, ref. at point: the gain at its bound, the loss on reference_test at its point
    estimate (what the reference check costs in power).

Equal quality means equal on both splits: the gate checks both, and a challenger that
is no better on current_test and no worse on reference_test is the one that must not win.
  - synthetic regression, R² ≈ 0.90 on both splits: truth of variance 1, predictions =
    truth + errors, either independent per model, or a noise both models share plus an
    error of each. 0.05 of the target's variance is shared, as in `mlcycle.ingest.datagen`
    (noise sd 1200: 0.037 of the loan amount's variance in OLD, 0.049 in NEW);
  - the baseline's forest (100 trees) refitted with another seed, (a) on the same
    training rows, (b) on other rows of the same populations: a pair drawn from a pool of
    12 per trial; data from `mlcycle.ingest.datagen` (reference_test from OLD, current_test from
    NEW, training rows 1600 of each, as etl splits the bundled files: window=all);
  - synthetic 3-class labels, each model right 80 % of the time (weighted F1).
Better by +0.02 R² (expected) on current_test: the same synthetic error structures at
R² 0.90 → 0.92 and 0.80 → 0.82, equal on reference_test, and once better on both. With it,
the median bootstrap standard error of the current_test difference and the rows a
one-sided 5 % test needs for 80 % power on current_test alone (Δ = 2.49 SE).

Then how different forests of another seed really are (their R² on 20,000 current
rows) and how often the gate's bound on 400 of those rows exceeds that true gap, and the
time of one bootstrap: 2000 resamples of 400 rows, median of 20.

    .venv/bin/python benchmarks/bench_gate.py              # 200 trials each
    .venv/bin/python benchmarks/bench_gate.py --trials 50  # quicker, noisier
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mlcycle.ingest import datagen  # noqa: E402
from mlcycle.ingest.data import build_schema  # noqa: E402
from mlcycle.models.families.rf import ForestParams  # noqa: E402
from mlcycle.models.families.rf import fit as fit_forest  # noqa: E402
from mlcycle.monitoring import gate  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY, evaluate  # noqa: E402
from mlcycle.monitoring.promotion import decide  # noqa: E402

SPLITS = ("current_test", "reference_test")
RULES = ("point", "gate", "two-sided", "gate, ref. at point")
# z(0.95) + z(0.80): a one-sided 5 % test has 80 % power when the effect is this many SE.
Z_POWER = 2.486
EFFECT = 0.02
CONFIDENCE = 0.95
N_RESAMPLES = 2000
# As etl splits the bundled files: 2000 rows a population, test_size 0.2.
FOREST_TRAIN_ROWS = 1600
FOREST_POOL = 12
TARGET = "montant_pret"
POPULATIONS = (datagen.OLD, datagen.NEW)


def regression_split(rng, rows: int, shared: float, champion: float, challenger: float):
    """Truth of variance 1; each model's error = a noise both share + its own error, with
    the given variances (R² ≈ 1 − shared − own)."""
    y = rng.normal(0, 1, rows)
    common = rng.normal(0, np.sqrt(shared), rows) if shared else 0.0
    pred_champion = y + common + rng.normal(0, np.sqrt(champion), rows)
    pred_challenger = y + common + rng.normal(0, np.sqrt(challenger), rows)
    return y, pred_champion, pred_challenger


def synthetic(shared: float, champion: float, challenger: float, both: bool = False):
    """A trial: current_test with the given error variances; on reference_test the models
    are equal (the champion's variance for both), or as on current_test with `both`."""

    def trial(rng, rows):
        return {
            "current_test": regression_split(rng, rows, shared, champion, challenger),
            "reference_test": regression_split(
                rng, rows, shared, champion, challenger if both else champion
            ),
        }

    return "regression", trial


def labels_trial(rng, rows: int, classes: int = 3, right: float = 0.8):
    """3 classes; each model is right with probability `right`, else says another class."""

    def split():
        y = rng.integers(0, classes, rows)

        def model():
            wrong = (y + rng.integers(1, classes, rows)) % classes
            return np.where(rng.random(rows) < right, y, wrong)

        return y, model(), model()

    return {name: split() for name in SPLITS}


def _draw(population, seed: int, rows: int) -> pd.DataFrame:
    frame = datagen.generate(population, rows + rows // 20 + 20, seed)
    frame = frame.drop(columns=["nom", "prenom"]).dropna(subset=[TARGET])
    return frame.iloc[:rows].reset_index(drop=True)


def _train(seed: int) -> pd.DataFrame:
    """Training rows of both populations (window=all), so both models know both splits."""
    parts = [_draw(p, seed + i, FOREST_TRAIN_ROWS) for i, p in enumerate(POPULATIONS)]
    return pd.concat(parts, ignore_index=True)


@functools.cache
def forest_pool(same_rows: bool) -> tuple:
    """FOREST_POOL forests with the baseline's defaults (`ForestParams()`: 100 trees), each
    with its own seed, on the same training rows or each on its own. Trials draw a pair
    from the pool and fresh test rows: fitting a pair per trial would take half an hour."""
    rows = _train(seed=1)
    schema = build_schema(rows, TARGET, "regression", [])
    return tuple(
        fit_forest(
            schema, ForestParams(seed=k, n_jobs=1), rows if same_rows else _train(100 + 10 * k)
        )
        for k in range(FOREST_POOL)
    )


def forest_trial(same_rows: bool):
    """Two forests of the same family, another seed each: equal expected quality."""

    def trial(rng, rows):
        pool = forest_pool(same_rows)
        champion, challenger = (pool[k] for k in rng.choice(len(pool), 2, replace=False))
        seed = int(rng.integers(2**31))
        test = {
            "current_test": _draw(datagen.NEW, seed, rows),
            "reference_test": _draw(datagen.OLD, seed + 1, rows),
        }
        return {
            name: (
                frame[TARGET].to_numpy(),
                *(model.predict(frame.drop(columns=[TARGET])) for model in (champion, challenger)),
            )
            for name, frame in test.items()
        }

    return "regression", trial


def decisions(task: str, splits: dict, seed: int) -> tuple[dict[str, bool], float]:
    """Promote or not under each rule, through `promotion.decide` itself, and the bootstrap
    standard error of the current_test difference."""
    metric = PRIMARY[task]
    champion, challenger, intervals = {}, {}, {}
    for name, (y, pred_champion, pred_challenger) in splits.items():
        champion[f"{name}_{metric}"] = evaluate(task, y, pred_champion)[metric]
        challenger[f"{name}_{metric}"] = evaluate(task, y, pred_challenger)[metric]
        intervals[name] = gate.paired_bootstrap(
            task,
            y,
            pred_champion,
            pred_challenger,
            n_resamples=N_RESAMPLES,
            confidence=CONFIDENCE,
            seed=seed,
        )
    # The same resamples read as a two-sided 95 % interval: 2.5th and 97.5th percentiles.
    two_sided = {
        name: dataclasses.replace(
            iv, low=float(np.quantile(iv.deltas, 0.025)), high=float(np.quantile(iv.deltas, 0.975))
        )
        for name, iv in intervals.items()
    }
    # The gain judged at its bound, the loss on reference_test at its point estimate.
    reference = intervals["reference_test"]
    point_reference = {
        **intervals,
        "reference_test": dataclasses.replace(reference, low=reference.delta, high=reference.delta),
    }
    rules = dict(zip(RULES, (None, intervals, two_sided, point_reference), strict=True))
    promoted = {
        rule: decide(task, champion, challenger, intervals=given).promote
        for rule, given in rules.items()
    }
    return promoted, float(intervals["current_test"].deltas.std())


def rates(scenario, trials: int, rows: int) -> tuple[dict[str, float], float]:
    """Each rule's promotion rate over the trials, and the median standard error."""
    task, trial = scenario
    promoted = {rule: 0 for rule in RULES}
    errors = []
    for t in range(trials):
        rng = np.random.default_rng(10_000 + t)
        decided, error = decisions(task, trial(rng, rows), seed=t)
        errors.append(error)
        for rule, yes in decided.items():
            promoted[rule] += yes
    return {rule: promoted[rule] / trials for rule in RULES}, float(np.median(errors))


def time_bootstrap(rows: int = 400, repeats: int = 20) -> float:
    rng = np.random.default_rng(0)
    y, a, b = regression_split(rng, rows, 0.05, 0.05, 0.05)
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        gate.paired_bootstrap("regression", y, a, b, n_resamples=N_RESAMPLES, seed=k)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def table(title: str, scenarios: dict, trials: int, rows: int, power: bool = False) -> None:
    print(f"\n{title} ({trials} trials, {rows} rows a split)")
    extra = ["SE of Δ", "rows for 80 %"] if power else []
    print(f"| scenario | {' | '.join([*RULES, *extra])} |")
    print("| --- |" + " ---: |" * (len(RULES) + len(extra)))
    for label, scenario in scenarios.items():
        promoted, error = rates(scenario, trials, rows)
        cells = [f"{100 * promoted[rule]:.1f} %" for rule in RULES]
        if power:
            cells += [f"{error:.4f}", f"{rows * (Z_POWER * error / EFFECT) ** 2:,.0f}"]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


def forest_truth(slices: int, big: int = 20_000, rows: int = 400) -> None:
    """How different the pool's forests (same rows) really are: each one's R² on `big`
    current rows, and how often the gate's bound on `rows` of them exceeds the true gap."""
    pool = forest_pool(same_rows=True)
    frame = _draw(datagen.NEW, 7, big)
    y = frame[TARGET].to_numpy()
    predictions = [model.predict(frame.drop(columns=[TARGET])) for model in pool]
    r2 = [evaluate("regression", y, p)["r2"] for p in predictions]
    gaps = [b - a for i, a in enumerate(r2) for b in r2[i + 1 :]]
    rng = np.random.default_rng(0)
    misses = above = 0
    errors = []
    for k in range(slices):
        i, j = rng.choice(len(pool), 2, replace=False)
        part = rng.choice(big, rows, replace=False)
        interval = gate.paired_bootstrap(
            "regression", y[part], predictions[i][part], predictions[j][part], seed=k
        )
        errors.append(interval.deltas.std())
        misses += interval.low > r2[j] - r2[i]
        above += interval.low > 0
    print(
        f"\nforests of another seed, same rows ({len(pool)} forests): R² on {big:,} current "
        f"rows {min(r2):.4f}..{max(r2):.4f}, pairwise gap sd {np.std(gaps):.4f}; bootstrap SE "
        f"on {rows} rows {np.median(errors):.4f}; the 95 % lower bound exceeds the true gap in "
        f"{100 * misses / slices:.1f} % and exceeds 0 in {100 * above / slices:.1f} % of "
        f"{slices} draws of {rows} rows"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; {N_RESAMPLES} resamples, seeded"
    )
    equal = {
        "independent errors, R² 0.90 = 0.90": synthetic(0.0, 0.10, 0.10),
        "shared noise 0.05 + own 0.05 each, R² 0.90": synthetic(0.05, 0.05, 0.05),
        "forest refit, another seed, same rows": forest_trial(same_rows=True),
        "forest refit, another seed, other rows": forest_trial(same_rows=False),
        "3 classes, each model right 80 % (F1)": ("classification", labels_trial),
    }
    table("Equal quality: promotion rate (target: gate <= 5 %)", equal, args.trials, args.rows)
    better = {
        "independent errors, R² 0.90 -> 0.92": synthetic(0.0, 0.10, 0.08),
        "independent errors, R² 0.80 -> 0.82": synthetic(0.0, 0.20, 0.18),
        "shared noise 0.05 + own 0.05 -> 0.03, R² 0.90 -> 0.92": synthetic(0.05, 0.05, 0.03),
        "shared noise 0.05 + own 0.15 -> 0.13, R² 0.80 -> 0.82": synthetic(0.05, 0.15, 0.13),
        "shared noise, R² 0.90 -> 0.92 on both splits": synthetic(0.05, 0.05, 0.03, both=True),
    }
    table(
        "Better by +0.02 R² on current_test: promotion rate (target: gate >= 80 %)",
        better,
        args.trials,
        args.rows,
        power=True,
    )
    forest_truth(args.trials, rows=args.rows)
    print(f"\npaired_bootstrap, {N_RESAMPLES} resamples of 400 rows: {time_bootstrap():.4f} s")
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
