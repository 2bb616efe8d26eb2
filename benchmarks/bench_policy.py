"""The trigger policy over the whole production loop: realised quality against retrains.

For each stream and each policy (`always`, `never`, `drift`, `auto`), in a fresh
tracking store: `main` makes the first champion on the stream's start files, then, batch
after batch, as production runs it (docs/watch.md; the loop's contract):

    score the batch without its target  ->  label-free monitor (monitor -P score_run=...)
    ->  the labels of the batch scored `label_delay` batches ago arrive (feedback)
    ->  watch -P policy=<policy> (which runs main on the labelled rows when it triggers)

Every step is the real `mlflow run` of its entry point. The first champion is made once
per stream and every policy starts from a copy of that store (the same champion, its
artifacts shared read only); the wall time is the loop's, that main excluded. Recorded
per policy: the mean
realised primary metric over the batches (each batch judged on its labels, as scored by
the champion of the moment: `realised_<metric>` of its feedback_batch run), the worst
batch, the number of retrains (watch runs that triggered) and the wall time.

Streams:
- `bundled`: df_old -> df_new, then data/stream/batch_01..06 (customers move from batch
  1; the bank reprices at batch 3: R² 0.93 -> 0.47 with no feature drifting; again at 5);
- `bank-relationship`: df_old's population throughout, repriced (datagen.REPRICINGS[3])
  from batch 3 on: a relationship change and nothing else;
- `bank-covariate`: customers moving from df_old's population to datagen.HORIZON, the
  pricing unchanged: covariate drift only, where retraining should rarely pay.

Needs the `score` inference log, `feedback` and the label-free `monitor` (issue 24).
Usage: python benchmarks/bench_policy.py [--streams bundled,...] [--policies ...]
[--batches N] [--label-delay 1] [--epochs 20] [--n-trials 0] [--work DIR] [--recount]

A retrain is a watch run whose `main` ran; a trigger before any label has come back
(`always` on the first batch) runs none and is counted apart, as a trigger."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._isolated import isolated_env  # noqa: E402
from mlcycle import config  # noqa: E402
from mlcycle.ingest import datagen  # noqa: E402

POLICIES = ("always", "never", "drift", "auto")
STREAMS = ("bundled", "bank-relationship", "bank-covariate")
BANK_BATCHES = 6
BANK_ROWS = 500


# ---------------------------------------------------------------- the streams


def stream_files(name: str, folder: Path) -> tuple[Path, Path, list[Path]]:
    """(reference, current, batches) of a stream, written to folder when generated."""
    if name == "bundled":
        return (
            config.REFERENCE_CSV,
            config.CURRENT_CSV,
            sorted((config.DATA_DIR / "stream").glob("batch_*.csv")),
        )
    folder.mkdir(parents=True, exist_ok=True)
    old = datagen.OLD
    start = {"reference": (old, 2024), "current": (old, 2026)}
    paths = {}
    for role, (population, seed) in start.items():
        paths[role] = folder / f"{role}.csv"
        datagen.write_csv(datagen.generate(population, 2000, seed), paths[role])
    batches = []
    for k in range(1, BANK_BATCHES + 1):
        if name == "bank-relationship":
            population = replace(old, **datagen.REPRICINGS[3]) if k >= 3 else old
        elif name == "bank-covariate":
            t = k / BANK_BATCHES
            moved = {
                c: datagen._between(getattr(old, c), getattr(datagen.HORIZON, c), t)  # noqa: SLF001
                for c in datagen.COVARIATES
            }
            population = replace(old, **moved)
        else:
            raise SystemExit(f"unknown stream {name!r} (one of {', '.join(STREAMS)})")
        path = folder / f"batch_{k:02d}.csv"
        datagen.write_csv(datagen.generate(population, BANK_ROWS, 3000 + k), path)
        batches.append(path)
    return paths["reference"], paths["current"], batches


# ---------------------------------------------------------------- one loop


class Loop:
    """One stream under one policy, in its own tracking store."""

    def __init__(self, work: Path, model_name: str, args):
        self.work = work
        self.model = model_name
        self.args = args
        self.env = isolated_env(work)

    def step(self, entry: str, **params) -> None:
        cmd = [str(Path(sys.executable).parent / "mlflow"), "run", str(ROOT), "-e", entry]
        cmd += ["--env-manager", "local"]
        for key, value in params.items():
            cmd += ["-P", f"{key}={value}"]
        log = self.work / "steps.log"
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            done = subprocess.run(cmd, env=self.env, stdout=out, stderr=out, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{entry} failed (exit {done.returncode}); see {log}")

    def of_model(self, step: str) -> str:
        return f"tags.`mlcycle.step` = '{step}' and tags.`mlcycle.model_name` = '{self.model}'"

    def newest_score_run(self) -> str:
        import mlflow

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        (run,) = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=self.of_model("score"),
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        return run.info.run_id

    @property
    def db(self) -> Path:
        return self.work / "mlflow.db"

    def first_champion(self, reference: Path, current: Path) -> float:
        """main on the stream's start files: the champion every policy starts from."""
        start = time.perf_counter()
        self.step(
            "main",
            reference=reference,
            current=current,
            model_name=self.model,
            n_trials=self.args.n_trials,
            epochs=self.args.epochs,
        )
        return time.perf_counter() - start

    def run(self, policy: str, start_db: Path, batches: list[Path]) -> dict:
        """The batches under a policy, from a copy of the store where the first champion
        was made (its models' artifacts are shared, read only)."""
        a = self.args
        target = config.DEFAULT_TARGET
        shutil.copyfile(start_db, self.db)
        start = time.perf_counter()
        scored: list[tuple[Path, Path]] = []
        owed: list[int] = []
        for t, batch in enumerate(batches):
            frame = pd.read_csv(batch)
            unlabelled = self.work / f"{batch.stem}.unlabelled.csv"
            frame.drop(columns=[target]).to_csv(unlabelled, index=False)
            output = self.work / f"{batch.stem}.parquet"
            self.step("score", input=unlabelled, output=output, model_name=self.model)
            scored.append((batch, output))
            if not a.no_monitor:
                self.step("monitor", score_run=self.newest_score_run(), model_name=self.model)
            owed.append(t)
            last = t == len(batches) - 1
            arrived = [s for s in owed if s + a.label_delay <= t or last]
            for s in arrived:
                owed.remove(s)
                self.feedback(*scored[s], target)
            self.step(
                "watch",
                model_name=self.model,
                policy=policy,
                n_trials=a.n_trials,
                epochs=a.epochs,
            )
        wall = time.perf_counter() - start
        result = {**self.counts(), "wall_s": round(wall, 1)}
        (self.work / "result.json").write_text(json.dumps(result))
        return result

    def counts(self) -> dict:
        """What the store holds: realised quality, retrains (main ran) and triggers."""
        return {**self.realised(), "retrains": self.retrains(), "triggers": self.triggers()}

    def feedback(self, batch: Path, predictions: Path, target: str) -> None:
        scored = pd.read_parquet(predictions, columns=["prediction_id", "row"])
        truth = pd.read_csv(batch)[target].to_numpy()[scored["row"].to_numpy()]
        labels = self.work / f"{batch.stem}.labels.csv"
        pd.DataFrame({"prediction_id": scored["prediction_id"], target: truth}).to_csv(
            labels, index=False
        )
        output = self.work / f"{batch.stem}.labelled.csv"
        self.step("feedback", labels=labels, model_name=self.model, output=output)

    def realised(self) -> dict:
        import mlflow

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        runs = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=self.of_model("feedback_batch"),
            output_format="list",
        )
        by_batch = {}
        for r in sorted(runs, key=lambda r: r.info.start_time):
            for metric in ("realised_r2", "realised_f1"):
                if metric in r.data.metrics:
                    by_batch[r.data.tags["mlcycle.score_run"]] = r.data.metrics[metric]
        values = list(by_batch.values())
        return {
            "batches": len(values),
            "mean": round(statistics.fmean(values), 4) if values else None,
            "worst": round(min(values), 4) if values else None,
            "per_batch": [round(v, 3) for v in values],
        }

    def _watch_runs(self, condition: str) -> int:
        import mlflow

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        found = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"{self.of_model('watch')} and {condition}",
            output_format="list",
        )
        return len(found)

    def retrains(self) -> int:
        """watch runs whose main ran (a trigger before any label comes back runs none)."""
        return self._watch_runs("tags.`mlcycle.watch.main` = 'ran'")

    def triggers(self) -> int:
        return self._watch_runs("tags.`mlcycle.watch.trigger` = 'true'")


def table(results: list[dict]) -> str:
    lines = [
        "| stream | policy | mean realised | worst batch | per batch | retrains (triggers) "
        "| wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['stream']} | {r['policy']} | {r['mean']} | {r['worst']} | "
            f"{' '.join(map(str, r.get('per_batch', [])))} | {r['retrains']} "
            f"({r.get('triggers', '?')}) | {r.get('wall_s', '?')} |"
        )
    return "\n".join(lines)


def recount(args) -> list[dict]:
    """The table again from the stores a run left under --work (a run cut short
    included): each stream/policy folder's store, its wall time when it finished."""
    results = []
    for stream in args.streams.split(","):
        for policy in args.policies.split(","):
            folder = args.work / stream / policy
            if not (folder / "mlflow.db").exists():
                continue
            measured = Loop(folder, f"policy-{stream}", args).counts()
            done = folder / "result.json"
            wall = json.loads(done.read_text())["wall_s"] if done.exists() else "unfinished"
            results.append({"stream": stream, "policy": policy, **measured, "wall_s": wall})
    return results


def missing_steps() -> list[str]:
    """What of the production loop this checkout lacks (issue 24's score log and
    feedback, the label-free monitor)."""
    from mlflow.exceptions import ExecutionException
    from mlflow.projects._project_spec import load_project

    project = load_project(str(ROOT))
    missing = []
    try:
        project.get_entry_point("feedback")
    except ExecutionException:
        missing.append("the feedback entry point")
    if "score_run" not in project.get_entry_point("monitor").parameters:
        missing.append("monitor's score_run (the label-free monitor)")
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default=",".join(STREAMS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--batches", type=int, default=0, help="first N batches (0: all)")
    parser.add_argument("--label-delay", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-trials", type=int, default=0)
    parser.add_argument("--no-monitor", action="store_true", help="skip the label-free monitor")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlcycle-bench-policy"))
    parser.add_argument(
        "--recount", action="store_true", help="print the table from the stores under --work"
    )
    args = parser.parse_args()
    if args.recount:
        print(table(recount(args)))
        return
    missing = missing_steps()
    if missing:
        print(f"bench_policy: not run, this checkout lacks {' and '.join(missing)}")
        return
    results = []
    for stream in args.streams.split(","):
        reference, current, batches = stream_files(stream, args.work / stream / "data")
        batches = batches[: args.batches] if args.batches else batches
        first = Loop(args.work / stream / "start", f"policy-{stream}", args)
        seconds = first.first_champion(reference, current)
        print(json.dumps({"stream": stream, "first champion (s)": round(seconds, 1)}), flush=True)
        for policy in args.policies.split(","):
            loop = Loop(args.work / stream / policy, f"policy-{stream}", args)
            measured = loop.run(policy, first.db, batches)
            result = {"stream": stream, "policy": policy, **measured}
            print(json.dumps(result), flush=True)
            results.append(result)
    print(table(results))


if __name__ == "__main__":
    main()
