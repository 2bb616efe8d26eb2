"""Benchmark of the retrain step on the bundled data, in a throw-away tracking store.

Prints: the champion's (RandomForest) and the retrained challenger's metrics on the same
held-out rows after a default 60-epoch retrain; the network's 1-row predict p50 through
the logged pyfunc vs Keras `model.predict`; the share of the step's wall time spent in
MLflow logging calls; and whether a second run with the same seed gives the same metrics.

    .venv/bin/python benchmarks/bench_retrain.py
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What counts as "MLflow logging": every call that writes to the tracking store or the
# registry, including opening/closing the run and serialising the model and chart.
LOGGING_CALLS = {
    "mlflow": [
        "start_run",
        "end_run",
        "set_tag",
        "set_tags",
        "log_params",
        "log_metrics",
        "log_figure",
        "log_dict",
    ],
    "mlflow.pyfunc": ["log_model"],
    "MlflowClient": ["log_batch", "set_registered_model_alias", "set_model_version_tag"],
}
# Reads: the etl splits, the latest etl run, the base model. Reported apart.
READING_CALLS = {
    "mlflow": ["search_runs", "get_run"],
    "mlflow.artifacts": ["download_artifacts", "load_dict"],
    "mlflow.pyfunc": ["load_model"],
    "mlflow.models": ["get_model_info"],
    "MlflowClient": ["get_model_version_by_alias", "get_model_version"],
}


class CallTimer:
    """Wraps module functions and client methods; counts only the outermost MLflow call,
    so log_model's own internal client calls are not counted twice."""

    def __init__(self):
        self.seconds = {"logging": 0.0, "reading": 0.0}
        self.calls = {"logging": 0, "reading": 0}
        self.by_name: dict[str, float] = {}
        self._depth = 0
        self._undo = []

    def install(self):
        import mlflow
        import mlflow.artifacts
        import mlflow.models
        import mlflow.pyfunc

        owners = {
            "mlflow": mlflow,
            "mlflow.pyfunc": mlflow.pyfunc,
            "mlflow.artifacts": mlflow.artifacts,
            "mlflow.models": mlflow.models,
            "MlflowClient": mlflow.MlflowClient,
        }
        for kind, table in (("logging", LOGGING_CALLS), ("reading", READING_CALLS)):
            for owner, names in table.items():
                for name in names:
                    self._wrap(owners[owner], name, kind)
        return self

    def _wrap(self, owner, name, kind):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.seconds[kind] += spent
                self.by_name[name] = self.by_name.get(name, 0.0) + spent
                self.calls[kind] += 1
                self._depth -= 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def uninstall(self):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


def p50_ms(func, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def run_command(command, args: list[str]) -> None:
    try:
        command.main(args, standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="bench_retrain_")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    os.environ.setdefault("MLCYCLE_LOG_LEVEL", "WARNING")
    import mlflow

    from entrypoints.baseline import main as baseline
    from entrypoints.etl import main as etl
    from entrypoints.retrain import main as retrain
    from mlcycle.models.network import network_of

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mlflow {mlflow.__version__}"
    )
    run_command(etl, [])
    run_command(baseline, [])  # the RandomForest champion, defaults

    results = []
    for _ in range(2):
        timer = CallTimer().install()
        start = time.perf_counter()
        run_command(retrain, ["--epochs", "60"])  # every other parameter at its default
        wall = time.perf_counter() - start
        timer.uninstall()
        run = mlflow.search_runs(
            search_all_experiments=True,
            output_format="list",
            filter_string="tags.`mlcycle.step` = 'retrain'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )[0]
        results.append((run, wall, timer))

    run, wall, timer = results[0]
    m = run.data.metrics
    print(
        f"\nretrain, defaults (epochs 60, window current, patience 10, lr 0.001), "
        f"strategy used: {run.data.tags['mlcycle.strategy']}, "
        f"epochs trained {m['epochs_trained']:.0f} (best {m['best_epoch']:.0f})"
    )
    print(f"{'metric':<26}{'champion (before)':>20}{'challenger (after)':>20}")
    for split in ("current_test", "reference_test"):
        for name in ("mae", "rmse", "r2"):
            key = f"{split}_{name}"
            print(f"{key:<26}{m[f'before_{key}']:>20.4f}{m[f'after_{key}']:>20.4f}")
    beats = (
        m["after_current_test_mae"] < m["before_current_test_mae"]
        and m["after_current_test_r2"] > m["before_current_test_r2"]
    )
    print(f"challenger beats champion on current_test (lower MAE, higher R2): {beats}")

    print(
        "\nMLflow calls during the step (run 1 imports TensorFlow inside the step, as a "
        "fresh `mlflow run` process does; run 2 finds it imported):"
    )
    for i, (_, wall_i, timer_i) in enumerate(results, start=1):
        share = timer_i.seconds["logging"] / wall_i
        print(
            f"  run {i}: step wall {wall_i:.2f} s; logging {timer_i.seconds['logging']:.2f} s "
            f"in {timer_i.calls['logging']} calls = {share:.1%} of the step "
            f"(target <= 5%); reads (splits, base model) "
            f"{timer_i.seconds['reading']:.2f} s"
        )
        costly = sorted(timer_i.by_name.items(), key=lambda kv: -kv[1])[:4]
        print("         costliest: " + ", ".join(f"{k} {v:.2f} s" for k, v in costly))
    same = all(results[1][0].data.metrics[k] == v for k, v in m.items() if k.startswith("after_"))
    print(f"same seed, same data, second run: identical after_* metrics: {same}")

    pyfunc = mlflow.pyfunc.load_model("models:/loan-amount@challenger")
    model = network_of(pyfunc)
    from mlcycle.ingest.datasets import load_splits

    schema, splits = load_splits(run.data.tags["mlcycle.etl_run"])
    row = splits.current_test[schema.features].head(1)
    x = model.preprocessing.transform(row)
    through_pyfunc = p50_ms(lambda: pyfunc.predict(row), 500)
    in_memory = p50_ms(lambda: model.predict(row), 500)
    direct = p50_ms(lambda: model.network(x, training=False).numpy(), 300)
    keras_predict = p50_ms(lambda: model.network.predict(x, verbose=0), 60)
    print("\n1-row predict p50, in-process:")
    print(f"  pyfunc.predict(raw row)                  {through_pyfunc:8.2f} ms")
    print(f"  NetworkModel.predict(raw row), no MLflow {in_memory:8.2f} ms")
    print(f"  eager network(x, training=False)         {direct:8.2f} ms (x preprocessed)")
    print(f"  keras model.predict(x)                   {keras_predict:8.2f} ms (x preprocessed)")
    print(
        f"  pyfunc is {keras_predict / through_pyfunc:.1f}x faster than keras model.predict "
        "(target >= 10x)"
    )
    print(f"\nstore: {tmp}")
    if "--drift-scenarios" in sys.argv[1:]:
        drift_scenarios()


def drift_scenarios() -> None:
    """The forest fitted on reference train (the champion's recipe) vs the network with the
    retrain defaults on current train, on data generated with other drifts and sizes."""
    from dataclasses import fields, replace

    from mlcycle.ingest import datagen
    from mlcycle.models.families import rf
    from mlcycle.models.network import NetworkParams
    from mlcycle.models.training import fit_network
    from mlcycle.monitoring.evaluate import score
    from mlcycle.steps.etl import EtlParams, prepare

    def between(a, b, t):
        mixed = {}
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            mixed[f.name] = (
                tuple(p + t * (q - p) for p, q in zip(x, y, strict=True))
                if isinstance(x, tuple)
                else x + t * (y - x)
            )
        return datagen.Population(**mixed)

    pricing = datagen.PRICING
    covariates_only = replace(datagen.NEW, **{k: getattr(datagen.OLD, k) for k in pricing})
    scenarios = [
        ("bundled drift, 2000 rows", datagen.NEW, 2000),
        ("bundled drift, 250 rows", datagen.NEW, 250),
        ("half the drift, 2000 rows", between(datagen.OLD, datagen.NEW, 0.5), 2000),
        ("quarter of the drift, 1000", between(datagen.OLD, datagen.NEW, 0.25), 1000),
        ("covariates only, 2000 rows", covariates_only, 2000),
    ]
    print(
        "\ndrift scenarios (current_test; new seeds; forest on reference train vs network "
        "with the retrain defaults):"
    )
    print(f"  {'scenario':<28}{'forest MAE':>11}{'R2':>7}{'network MAE':>13}{'R2':>7}  beats")
    folder = Path(tempfile.mkdtemp(prefix="bench_drift_"))
    for i, (name, population, rows) in enumerate(scenarios):
        datagen.write_csv(datagen.generate(datagen.OLD, 2000, 700 + i), folder / "old.csv")
        datagen.write_csv(datagen.generate(population, rows, 800 + i), folder / "new.csv")
        data = prepare(
            EtlParams(reference=str(folder / "old.csv"), current=str(folder / "new.csv"))
        )
        forest = rf.fit(data.schema, rf.ForestParams(), data.splits.reference_train)
        network, _ = fit_network(data.schema, NetworkParams(), data.splits.current_train)
        f = score(forest, data.schema, data.splits)
        n = score(network, data.schema, data.splits)
        beats = (
            n["current_test_mae"] < f["current_test_mae"]
            and n["current_test_r2"] > f["current_test_r2"]
        )
        print(
            f"  {name:<28}{f['current_test_mae']:>11.0f}{f['current_test_r2']:>7.3f}"
            f"{n['current_test_mae']:>13.0f}{n['current_test_r2']:>7.3f}  {beats}"
        )


if __name__ == "__main__":
    main()
