"""How the blend's weights are chosen, measured: on scenarios of the bank, main's three
kinds of candidate (a forest and boosted trees with their defaults, a network as retrain
trains it from scratch on current rows) fitted on current train less the judging slice,
then on the slice the blend step's cross-fitted score (weights chosen on one half, scored
on the other, both ways) of four ways to weigh them:

  grid    convex weights on a grid of 0.1, best primary metric (what the step does)
  fine    the same on a grid of 0.02
  nnls    non-negative least squares on the values (on the probabilities of each class
          stacked, for a classifier), normalised to sum 1
  equal   one third each (nothing chosen)

and the best single candidate's score on the same rows, over several halvings of the
slice. Also the test-split score of each weighting chosen on the whole slice.

    .venv/bin/python benchmarks/bench_blend_weights.py [--only bundled,full] [--halvings 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.bench_quality import generated, weather  # noqa: E402
from mlcycle.models import blending, selection  # noqa: E402
from mlcycle.models.families import hgb, nn, rf  # noqa: E402
from mlcycle.models.network import NetworkParams  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY, evaluate  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402

SEED = 42


def nnls_weights(task, truth, members, classes, rows):
    y = np.asarray(truth)[rows]
    if task == "regression":
        a = np.column_stack([m.values[rows] for m in members])
        b = y.astype("float64")
    else:
        onehot = (y[:, None] == np.asarray(classes, dtype=object)[None, :]).astype("float64")
        a = np.column_stack([m.values[rows].ravel() for m in members])
        b = onehot.ravel()
    w, _ = nnls(a, b)
    return w / w.sum() if w.sum() > 0 else np.full(len(members), 1 / len(members))


def grid(step):
    def choose(task, truth, members, classes, rows):
        y = np.asarray(truth, dtype=object if task == "classification" else "float64")[rows]
        picked = [blending.rows_of(m, rows) for m in members]
        weights = blending.simplex_grid(len(members), step)
        scores = [blending.score_of(task, y, blending.blended(picked, w), classes) for w in weights]
        return weights[int(np.argmax(scores))]

    return choose


WAYS = {
    "grid": grid(0.1),
    "fine": grid(0.02),
    "nnls": nnls_weights,
    "equal": lambda task, truth, members, classes, rows: np.full(len(members), 1 / len(members)),
}


def crossfit(way, task, truth, members, classes, seed):
    order = np.random.default_rng(seed).permutation(len(truth))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    values = np.zeros_like(members[0].values)
    for fit, held in (halves, halves[::-1]):
        w = way(task, truth, members, classes, fit)
        values[held] = blending.blended([blending.rows_of(m, held) for m in members], w)
    return evaluate(task, truth, blending.answers_of(task, values, classes))[PRIMARY[task]]


def scenario_rows(scenario, folder: Path, halvings: int) -> str:
    ref, cur = folder / f"{scenario.name}_old.csv", folder / f"{scenario.name}_new.csv"
    scenario.reference.to_csv(ref, index=False)
    scenario.current.to_csv(cur, index=False)
    data = prepare(
        EtlParams(
            reference=str(ref), current=str(cur), target=scenario.target,
            drop_columns=scenario.drop, seed=SEED,
        )
    )  # fmt: skip
    schema, splits = data.schema, data.splits
    fit_rows, judge = selection.judging_slice(splits.current_train, SEED)
    models = {
        "rf": rf.fit(schema, rf.ForestParams(seed=SEED), fit_rows),
        "hgb": hgb.fit(schema, hgb.BoostingParams(seed=SEED), fit_rows),
        "nn": nn.fit(schema, NetworkParams(seed=SEED), fit_rows),
    }
    classes, task = list(schema.classes), schema.task
    truth = judge[schema.target].to_numpy()
    test = splits.current_test
    members, tested = [], []
    for label, model in models.items():
        members.append(
            blending.candidate_of(label, blending.slice_predictions(model, schema, judge), schema)
        )
        tested.append(
            blending.candidate_of(label, blending.slice_predictions(model, schema, test), schema)
        )
    metric = PRIMARY[task]
    singles = {m.label: evaluate(task, truth, m.labels)[metric] for m in members}
    best = max(singles, key=singles.get)
    rows = [f"| {scenario.name} | {len(truth)} | {best} {singles[best]:.4f} |"]
    y_test = test[schema.target].to_numpy()
    best_test = evaluate(task, y_test, tested[list(models).index(best)].labels)[metric]
    cells = []
    for way in WAYS.values():
        scores = [crossfit(way, task, truth, members, classes, s) for s in range(halvings)]
        w = way(task, truth, members, classes, np.arange(len(truth)))
        on_test = evaluate(
            task, y_test, blending.answers_of(task, blending.blended(tested, w), classes)
        )
        cells.append(
            f"{np.mean(scores) - singles[best]:+.4f} / {on_test[metric] - best_test:+.4f} "
            f"({', '.join(f'{v:.2f}' for v in w)})"
        )
    return rows[0] + " " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="bundled,full,half,covariates,relationship,weather")
    parser.add_argument("--halvings", type=int, default=10)
    args = parser.parse_args()
    wanted = args.only.split(",")
    bank = {s.name: s for s in generated()}
    if "weather" in wanted:
        bank["weather"] = weather()
    print(
        "| scenario | slice rows | best single (slice) | "
        + " | ".join(
            f"{w}: cross-fitted gain on the slice / gain on current_test (weights rf, hgb, nn)"
            for w in WAYS
        )
        + " |"
    )
    print("| --- " * (3 + len(WAYS)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            print(scenario_rows(bank[name], Path(tmp), args.halvings), flush=True)


if __name__ == "__main__":
    main()
