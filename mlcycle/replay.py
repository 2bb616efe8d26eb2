"""`make replay`: the model's life over the bundled stream, one `main` per batch, in order.

Each batch is the current data of one `main` whose reference is the batch before it (the
data the champion last learned on), starting where `make run` starts (df_old, then
df_new). From the first batch on the champion may be a network: retrain then reloads it
from the registry and fine-tunes it on the new rows. Each `main` is a real `mlflow run`,
so what the replay leaves is what a user running main batch after batch would have; the
last report's History section shows every batch. Cached steps are reused, so a replay
started again resumes where it stopped."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

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


def main_command(reference: Path, current: Path, params: dict[str, str]) -> list[str]:
    """The `mlflow run` of main on one pair (the current environment, as `make run`)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "run", str(config.PROJECT_ROOT)]
    cmd += ["-e", "main", "--env-manager", "local"]
    for key, value in {"reference": reference, "current": current, **params}.items():
        cmd += ["-P", f"{key}={value}"]
    return cmd


def last_report(model_name: str) -> str | None:
    """The report of the model's newest monitor run, from the tracking store."""
    import mlflow

    from mlcycle.monitoring.history import monitor_runs

    mlflow.set_tracking_uri(config.tracking_uri())
    runs = monitor_runs(model_name)
    return runs[-1].data.tags.get("mlcycle.report") if runs else None


def replay(steps: list[tuple[Path, Path]], params: dict[str, str], model_name: str) -> str | None:
    """Run main on each pair in order; stop at the first failure (exit code kept)."""
    for number, (reference, current) in enumerate(steps, 1):
        log.info("replay %d/%d: main on %s (reference %s)", number, len(steps), current, reference)
        done = subprocess.run(main_command(reference, current, params), check=False)
        if done.returncode != 0:
            raise SystemExit(done.returncode)
    return last_report(model_name)


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stream = batches(args.stream)
    stream = stream[: args.batches] if args.batches else stream
    start = [config.REFERENCE_CSV, config.CURRENT_CSV]
    params = {
        "model_name": args.model_name,
        "n_trials": str(args.n_trials),
        "epochs": str(args.epochs),
    }
    if args.refit_families is not None:
        params["refit_families"] = args.refit_families
    report = replay(pairs(start, stream), params, args.model_name)
    print(f"last report: {report}")


if __name__ == "__main__":
    cli()
