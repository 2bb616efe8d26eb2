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

    .venv/bin/python benchmarks/bench_stream.py

Prints a Markdown table (data/README.md quotes it). About 20 s on 2 cores.
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


def main() -> None:
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


if __name__ == "__main__":
    main()
