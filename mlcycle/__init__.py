"""mlcycle: keep a tabular model healthy as its data drifts, as an MLflow Project.

The package is grouped into wings by concern; each may import only the wings below it
(tests/unit/test_wings.py checks it):

    steps/        the entry points' steps: the only place that imports every wing
    (top level)   cli, summary, replay, dashboard: commands over the wings below
    scaleout/     Spark, the team server, Optuna's shared storage
    lifecycle/    a model's life in the registry: aliases, ledger, lineage, the workflow
                  cache of runs
    models/       the families, their training and tuning, and what is served
    monitoring/   measuring models and data: metrics, drift, quality, the gate and its
                  promotion decision, the report
    ingest/       reading, checking and splitting data; the bundled data's generator
    (top level)   config, errors, params, signals, telemetry: the foundation, no wing

`mlcycle.network` and `mlcycle.served_forest` at the top level only re-export the
pyfunc classes that models logged before the wings name (models from code)."""

__version__ = "0.1.0"
