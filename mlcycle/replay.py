"""`make replay`: the model's life over the bundled stream, one `main` per batch, in order.

Each batch is the current data of one `main` whose reference is the batch before it (the
data the champion last learned on), starting where `make run` starts (df_old, then
df_new). From the first batch on the champion may be a network: retrain then reloads it
from the registry and fine-tunes it on the new rows. Each `main` is a real `mlflow run`,
so what the replay leaves is what a user running main batch after batch would have; the
last report's History section shows every batch. Cached steps are reused, so a replay
started again resumes where it stopped.

With `--production` (`make replay-production`) the stream runs as production does: each
batch is scored by the champion without its target (`score`), watched without labels
(the label-free `monitor -P score_run=...`, where the project has it), and its labels come
back `--label-delay` batches later (default 1) as a file of prediction ids and targets
(`feedback`), whose labelled rows are the current data of a `main`, the previous
labelled rows its reference. Labels still owed when the stream ends arrive at the end.
The work files (unlabelled batches, predictions, labels, labelled rows) go to `--work`.

Another data set: `--reference` and `--current` are the pair the replay starts from (the
bundled df_old and df_new by default), `--stream` its batches, and `-P KEY=VALUE` (as
`mlflow run` takes them) any other parameter of every `main`, e.g. `-P target=churned
-P task=classification -P drop_columns=customer_id`."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mlcycle import config

log = logging.getLogger(__name__)

STREAM_DIR = config.DATA_DIR / "stream"


def batches(folder: Path = STREAM_DIR) -> list[Path]:
    """The stream's batch files in time order (their names sort in time)."""
    found = sorted(folder.glob("batch_*.csv"))
    if not found:
        raise SystemExit(f"mlcycle error: no batch_*.csv in {folder}")
    return found


def pairs(start: list[Path], stream: list[Path]) -> list[tuple[Path, Path]]:
    """(reference, current) per main: each file is the next one's reference."""
    files = [*start, *stream]
    return list(zip(files, files[1:], strict=False))


def step_command(entry: str, params: dict) -> list[str]:
    """The `mlflow run` of one entry point (the current environment, as `make run`)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "run", str(config.PROJECT_ROOT)]
    cmd += ["-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    return cmd


def main_command(reference: Path, current: Path, params: dict[str, str]) -> list[str]:
    """The `mlflow run` of main on one pair."""
    return step_command("main", {"reference": reference, "current": current, **params})


class Stopped(SystemExit):
    """A step of the replay failed: the replay stops there, its exit code kept."""

    def __init__(self, code: int, entry: str, batch: str):
        super().__init__(code)
        self.entry, self.batch = entry, batch


def summary(done: int, total: int, stopped: Stopped | None = None) -> str:
    """The replay's own last word: the batches done, and where it stopped."""
    line = f"replay: {done} of {total} batch(es) done"
    if stopped is not None:
        line += f"; stopped at {stopped.batch}: {stopped.entry} exited {stopped.code}"
    return line


def run_step(entry: str, params: dict, batch: str = "") -> None:
    """One step; the replay stops at the first failure (exit code kept)."""
    done = subprocess.run(step_command(entry, params), check=False)
    if done.returncode != 0:
        raise Stopped(done.returncode, entry, batch or str(params.get("current", "")))


def last_report(model_name: str) -> str | None:
    """The report of the model's newest monitor run, from the tracking store."""
    import mlflow

    from mlcycle.monitoring.history import monitor_runs

    mlflow.set_tracking_uri(config.tracking_uri())
    runs = monitor_runs(model_name)
    return runs[-1].data.tags.get("mlcycle.report") if runs else None


def replay(
    steps: list[tuple[Path, Path]], params: dict[str, str], model_name: str, done: list
) -> str | None:
    """Run main on each pair in order; stop at the first failure (exit code kept). `done`
    gets each pair's current file once its main has finished."""
    for number, (reference, current) in enumerate(steps, 1):
        log.info("replay %d/%d: main on %s (reference %s)", number, len(steps), current, reference)
        finished = subprocess.run(main_command(reference, current, params), check=False)
        if finished.returncode != 0:
            raise Stopped(finished.returncode, "main", current.name)
        done.append(current)
    return last_report(model_name)


# ------------------------------------------------------------------ the production loop


def arrivals(batches: int, delay: int) -> list[list[int]]:
    """Per batch scored (0-based), the batches whose labels arrive right after it: batch
    t's labels arrive after batch t + delay is scored; those still owed at the end, after
    the last one."""
    out: list[list[int]] = [[] for _ in range(batches)]
    for t in range(batches):
        out[min(t + delay, batches - 1)].append(t)
    return out


def labels_file(batch: pd.DataFrame, predictions: pd.DataFrame, target: str) -> pd.DataFrame:
    """What comes back later for a scored batch: each row's prediction_id and its truth
    (the batch's target at the row score read)."""
    truth = batch[target].to_numpy()[predictions["row"].to_numpy()]
    return pd.DataFrame({"prediction_id": predictions["prediction_id"], target: truth})


def label_free_monitor_available() -> bool:
    """Whether this checkout's monitor takes score_run (the label-free monitor)."""
    from mlflow.projects._project_spec import load_project

    entry = load_project(str(config.PROJECT_ROOT)).get_entry_point("monitor")
    return "score_run" in entry.parameters


def production(
    stream: list[Path],
    params: dict[str, str],
    model_name: str,
    delay: int,
    work: Path,
    done: list,
    start: tuple[Path, Path] = (config.REFERENCE_CSV, config.CURRENT_CSV),
) -> str | None:
    """The stream as production runs it (see the module doc), after a main on the start
    pair (reference, current); `done` gets each batch once it is scored (and watched)."""
    target = params.get("target", config.DEFAULT_TARGET)
    # The rows' ids are a column of the labelled files: never a feature.
    dropped = params.get("drop_columns", config.DEFAULT_DROP_COLUMNS)
    main_params = {**params, "drop_columns": ",".join(filter(None, [dropped, "prediction_id"]))}
    work.mkdir(parents=True, exist_ok=True)
    log.info("production replay: main on %s first (the champion)", start[1])
    run_step("main", {"reference": start[0], "current": start[1], **params})
    monitor = label_free_monitor_available()
    reference = start[1]
    scored: list[Path] = []
    for t, (path, arrived) in enumerate(zip(stream, arrivals(len(stream), delay), strict=True)):
        batch = pd.read_csv(path)
        unlabelled = work / f"{path.stem}.unlabelled.csv"
        batch.drop(columns=[target]).to_csv(unlabelled, index=False)
        output = work / f"{path.stem}.parquet"
        log.info("production replay %d/%d: score %s without labels", t + 1, len(stream), path)
        run_step(
            "score", {"input": unlabelled, "output": output, "model_name": model_name}, path.name
        )
        scored.append(output)
        score_run = pd.read_parquet(output, columns=["prediction_id"])["prediction_id"][0]
        score_run = score_run.rsplit("-", 1)[0]
        # THE call site of the label-free monitor (issue 24, item 2): run per batch once
        # this checkout's monitor takes score_run, skipped (and said) before.
        if monitor:
            run_step("monitor", {"score_run": score_run, "model_name": model_name}, path.name)
        else:
            log.info("label-free monitor not in this checkout: batch %s not watched", path.stem)
        for s in arrived:
            source = stream[s]
            labels = work / f"{source.stem}.labels.csv"
            labelled = work / f"{source.stem}.labelled.csv"
            predictions = pd.read_parquet(scored[s], columns=["prediction_id", "row"])
            labels_file(pd.read_csv(source), predictions, target).to_csv(labels, index=False)
            log.info("production replay: the labels of %s arrive", source.stem)
            feedback = {"labels": labels, "model_name": model_name, "output": labelled}
            run_step("feedback", feedback, f"the labels of {source.name}")
            main = {"reference": reference, "current": labelled, **main_params}
            run_step("main", main, f"the labels of {source.name}")
            reference = labelled
        done.append(path)
    return last_report(model_name)


# Set by the replay itself, each batch (reference, current) or by an option of its own.
OWN_PARAMS = {
    "reference": "--reference",
    "current": "--current",
    "model_name": "--model-name",
    "n_trials": "--n-trials",
    "epochs": "--epochs",
    "refit_families": "--refit-families",
}


def extra_params(given: list[str]) -> dict[str, str]:
    """`-P KEY=VALUE` options as main's parameters; a malformed one, or one the replay sets
    itself, is refused naming it."""
    params: dict[str, str] = {}
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"mlcycle error: -P takes KEY=VALUE, got {item!r}")
        if key in OWN_PARAMS:
            raise SystemExit(f"mlcycle error: -P {key}: give it as {OWN_PARAMS[key]}")
        params[key] = value
    return params


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlcycle.replay", description=__doc__)
    parser.add_argument("--stream", type=Path, default=STREAM_DIR, help="folder of batch_*.csv")
    parser.add_argument("--batches", type=int, default=0, help="replay only the first N (0: all)")
    parser.add_argument("--model-name", default=config.DEFAULT_MODEL_NAME)
    parser.add_argument("--n-trials", type=int, default=2, help="optimize trials per batch")
    parser.add_argument("--epochs", type=int, default=30, help="retrain epochs per batch")
    parser.add_argument(
        "--refit-families", default=None, help="main's refit_families (default: main's own)"
    )
    parser.add_argument(
        "--production",
        action="store_true",
        help="score each batch without labels, labels back later through feedback",
    )
    parser.add_argument(
        "--label-delay", type=int, default=1, help="batches before a batch's labels arrive"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=config.STATE_DIR / "replay",
        help="folder of the production replay's files",
    )
    parser.add_argument(
        "--reference", type=Path, default=config.REFERENCE_CSV, help="the start pair's reference"
    )
    parser.add_argument(
        "--current", type=Path, default=config.CURRENT_CSV, help="the start pair's current data"
    )
    parser.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another parameter of every main (target, task, drop_columns, ...)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stream = batches(args.stream)
    stream = stream[: args.batches] if args.batches else stream
    start = [args.reference, args.current]
    for path in start:
        if not path.is_file():
            raise SystemExit(f"mlcycle error: {path} is not a file (--reference/--current)")
    params = {
        "model_name": args.model_name,
        "n_trials": str(args.n_trials),
        "epochs": str(args.epochs),
        **extra_params(args.param),
    }
    if args.refit_families is not None:
        params["refit_families"] = args.refit_families
    if args.production and args.label_delay < 0:
        raise SystemExit("mlcycle error: --label-delay must be >= 0")
    done: list[Path] = []
    try:
        if args.production:
            report = production(
                stream, params, args.model_name, args.label_delay, args.work, done, tuple(start)
            )
        else:
            report = replay(pairs(start, stream), params, args.model_name, done)
    except Stopped as stopped:
        print(summary(len(done), len(stream), stopped), file=sys.stderr)
        raise
    print(summary(len(done), len(stream)))
    print(f"last report: {report}")


if __name__ == "__main__":
    cli()
