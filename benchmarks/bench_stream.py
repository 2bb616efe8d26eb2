"""How the bundled stream (data/stream/batch_NN.csv) drifts, and what that does to forests.

For each batch, in time order, it prints what the batch's customers look like (rows, mean
age, median income, share of Île-de-France, median loan) and the R² on every row of the
batch of the project's RandomForest (default `ForestParams`, preprocessing in the pipeline)
fitted on:

- old:  reference train of etl's default split of df_old.csv, i.e. the baseline champion;
- new:  current train of the same split of df_new.csv, i.e. a forest retrained on df_new;
- prev: every row of the batch before (df_new's current train for the first batch), i.e.
        what retraining on the latest batch alone would have given;
- all:  df_new's current train and every row of every earlier batch, i.e. retraining on
        everything seen since the drift.

A first row gives old and new on df_new's held-out rows (current test), where the stream
starts.

A second table asks what any retraining policy could have done when labels come late
(`--label-delay D`, 1 by default, as `bench_policy.py`): batch k is scored before the
labels of batches k-D..k-1 are in, so the best a retrain can deploy for it is fitted on
labelled batches up to k-1-D. It gives, per batch, the R² of forests fitted on what was
in by then: never (df_new's current train, the champion a policy that never retrains
keeps), latest (the last labelled batch alone, what a retrain on the present rows fits)
and all (df_new's current train and every labelled batch); then their means. A policy's
mean over the stream cannot beat never by more than what these forests show, whatever
it triggers on.

    .venv/bin/python benchmarks/bench_stream.py [--label-delay 1]

Prints two Markdown tables (data/README.md quotes them). About 40 s on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from mlcycle.config import DATA_DIR  # noqa: E402
from mlcycle.ingest import data  # noqa: E402
from mlcycle.ingest.datagen import STREAM_DIR  # noqa: E402
from mlcycle.models.families.rf import ForestParams  # noqa: E402
from mlcycle.models.families.rf import fit as fit_forest  # noqa: E402
from mlcycle.monitoring.metrics import evaluate  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402


def r2(model, schema: data.Schema, frame: pd.DataFrame) -> float:
    predicted = model.predict(frame[schema.features])
    return evaluate(schema.task, frame[schema.target], predicted)["r2"]


def describe(frame: pd.DataFrame) -> list[str]:
    """The drifting columns the README talks about, one figure each."""
    return [
        f"{len(frame)}",
        f"{frame['age'].mean():.1f}",
        f"{frame['revenu_estime_mois'].median():.0f}",
        f"{(frame['region'] == 'Île-de-France').mean():.1%}",
        f"{frame['montant_pret'].median():.0f}",
    ]


def main():
    """The first table; returns what the second needs."""
    prepared = prepare(EtlParams())
    schema, splits = prepared.schema, prepared.splits
    old = fit_forest(schema, ForestParams(), splits.reference_train)
    new = fit_forest(schema, ForestParams(), splits.current_train)
    header = ["batch", "rows", "mean age", "median income", "Île-de-France", "median loan"]
    header += ["R² old", "R² new", "R² prev", "R² all"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    # For scale: df_new's held-out rows, where the stream starts.
    test = splits.current_test
    cells = ["df_new test", *describe(test), *(f"{r2(m, schema, test):.3f}" for m in (old, new))]
    print("| " + " | ".join(cells + ["", ""]) + " |")
    prev, seen = new, [splits.current_train]
    for path in sorted((DATA_DIR / STREAM_DIR).glob("batch_*.csv")):
        raw = data.read_csv(path, "batch")
        frame = data.conform(raw, schema, "batch", path)
        everything = fit_forest(schema, ForestParams(), pd.concat(seen, ignore_index=True))
        cells = [path.stem, *describe(raw)]
        cells += [f"{r2(model, schema, frame):.3f}" for model in (old, new, prev, everything)]
        print("| " + " | ".join(cells) + " |")
        prev = fit_forest(schema, ForestParams(), frame)
        seen.append(frame)
    return schema, new, splits.current_train, seen[1:]


def delayed(schema, new, current_train, batches: list[pd.DataFrame], delay: int) -> None:
    """The second table: forests fitted on the labels in when each batch is scored."""
    print()
    print(f"Label delay {delay}: forests fitted on the labelled rows in when the batch is scored")
    print()
    header = ["batch", "labelled batches in", "R² never", "R² latest", "R² all"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    sums = {"never": [], "latest": [], "all": []}
    for k, frame in enumerate(batches, start=1):
        known = batches[: max(0, k - 1 - delay)]
        latest = fit_forest(schema, ForestParams(), known[-1]) if known else new
        everything = (
            fit_forest(schema, ForestParams(), pd.concat([current_train, *known])) if known else new
        )
        scores = {
            name: r2(model, schema, frame)
            for name, model in (("never", new), ("latest", latest), ("all", everything))
        }
        for name, value in scores.items():
            sums[name].append(value)
        seen = f"1..{len(known)}" if known else "none"
        print(
            f"| batch_{k:02d} | {seen} | " + " | ".join(f"{v:.3f}" for v in scores.values()) + " |"
        )
    means = " | ".join(f"{sum(v) / len(v):.3f}" for v in sums.values())
    print(f"| mean | | {means} |")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label-delay", type=int, default=1)
    args = parser.parse_args()
    delayed(*main(), args.label_delay)
