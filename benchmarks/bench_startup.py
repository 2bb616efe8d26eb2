"""Start-up of the entry points, against the time of `python -c "import mlflow"` measured
in the same run: what a user (or a scheduler running `score` every few minutes) pays
before any work.

For each checkout measured (this one, and with `--compare DIR` another one, e.g. an
older commit unpacked by `git archive`), each command in a fresh process, with its own
SQLite store and output root in a temporary folder:

- `python -c "import mlflow"`, `--repeat` times, alternating between checkouts (median);
- `python -m entrypoints.<step> --help` for every step, `--repeat` times (median);
- process start -> run opened, for etl, baseline, score and monitor: the run's
  `start_time` in the store minus the wall clock just before the process was started
  (etl on the bundled data, baseline's forest registered as champion, score on a 10-row
  file, monitor of that champion); and the same for MLflow's own floor, a process that
  only imports mlflow and opens a run in the same store (MLflow's SQLAlchemy store costs
  its import on top of `import mlflow`'s);
- `python -m entrypoints.score` on a 10-row file (the first rows of
  data/stream/batch_01.csv), end to end, `--repeat` times (median);
- monitor of that champion, end to end (the step's whole process, its exit included);
- with `--main`, `python -m entrypoints.main` with the least work (no trials, 2 epochs, no
  tree refits) on the bundled data, end to end, `--repeat` times: a pipeline's fixed costs
  (its children in main's process since 8b1c958; five processes before).

Bars (DESIGN.md, start-up): --help <= 1.0 s; run opened <= 1.5 s + import mlflow;
score on 10 rows <= 2.5x import mlflow.

    .venv/bin/python benchmarks/bench_startup.py
    git archive COMMIT | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_startup.py --compare /tmp/before --label after \
        --compare-label before [--main]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = (
    "etl",
    "baseline",
    "optimize",
    "retrain",
    "monitor",
    "main",
    "score",
    "rollback",
    "feedback",
    "watch",
)
MODEL = "bench-startup"
# MLflow's own floor: import it and open a run, nothing else.
FLOOR = (
    "import mlflow; mlflow.start_run(); mlflow.set_tag('mlcycle.step', 'floor'); mlflow.end_run()"
)
HELP_BAR = 1.0
RUN_OPEN_EXTRA = 1.5
SCORE_RATIO = 2.5


class Checkout:
    """One checkout measured: its folder, its store and output root under `tmp`."""

    def __init__(self, label: str, folder: Path, tmp: Path):
        self.label, self.folder = label, folder
        self.home = tmp / label
        self.home.mkdir(parents=True)
        self.store = f"sqlite:///{self.home / 'mlflow.db'}"
        self.env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=self.store,
            MLCYCLE_OUTPUT_ROOT=str(self.home / "out"),
            MLCYCLE_INFERENCE_DIR=str(self.home / "inference"),
            TF_CPP_MIN_LOG_LEVEL="2",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            # `python -m entrypoints.<step>` (a child with another env_manager): this interpreter's.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        # The store's tables, created once (not timed): a fresh clone pays that once, not
        # on every command.
        self.time(["-c", "import mlflow; mlflow.search_experiments()"])

    def time(self, args: list[str]) -> float:
        """Wall seconds of `python ARGS` in this checkout; fails loudly on a failure."""
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *args], cwd=self.folder, env=self.env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.label}: {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return seconds

    def step(self, step: str, *options: str) -> tuple[float, float]:
        """(process start -> run opened, wall seconds) of one step run as a process."""
        started = time.time()
        wall = self.time(["-m", f"entrypoints.{step}", *options])
        return self.run_start(step) - started, wall

    def run_start(self, step: str) -> float:
        """Start time (s since the epoch) of the newest run of `step` in this store."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.store)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiments,
            f"tags.`mlcycle.step` = '{step}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            raise SystemExit(f"{self.label}: no {step} run in {self.store}")
        return runs[0].info.start_time / 1000


def ten_rows(tmp: Path) -> Path:
    """The first 10 rows of the batch `score` takes by default."""
    lines = (ROOT / "data" / "stream" / "batch_01.csv").read_text(encoding="utf-8").splitlines()
    path = tmp / "ten.csv"
    path.write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")
    return path


def measure(checkouts: list[Checkout], repeat: int, tmp: Path, main: bool) -> dict[str, dict]:
    """Every figure of every checkout, as lists of seconds."""
    found = {
        c.label: {"import mlflow": [], "help": {}, "open": {}, "score": [], "wall": {}}
        for c in checkouts
    }
    for _ in range(repeat):  # alternating, so a busy moment hits every checkout alike
        for c in checkouts:
            found[c.label]["import mlflow"].append(c.time(["-c", "import mlflow"]))
    for step in STEPS:
        for _ in range(repeat):
            for c in checkouts:
                found[c.label]["help"].setdefault(step, []).append(
                    c.time(["-m", f"entrypoints.{step}", "--help"])
                )
    rows = ten_rows(tmp)
    uri = f"models:/{MODEL}@champion"

    def score(c: Checkout, i: int) -> tuple[float, float]:
        output = str(c.home / f"pred-{i}.parquet")
        return c.step(
            "score",
            "--model-uri",
            uri,
            "--model-name",
            MODEL,
            "--input",
            str(rows),
            "--output",
            output,
        )

    # Stage by stage, checkout after checkout: a busy moment hits both alike.
    for _ in range(repeat):
        for c in checkouts:
            started = time.time()
            c.time(["-c", FLOOR])
            found[c.label]["open"].setdefault("floor", []).append(c.run_start("floor") - started)
    for c in checkouts:
        found[c.label]["open"]["etl"] = [c.step("etl")[0]]
    for c in checkouts:
        found[c.label]["open"]["baseline"] = [c.step("baseline", "--model-name", MODEL)[0]]
    for i in range(repeat):
        for c in checkouts:
            opened, wall = score(c, i)
            found[c.label]["open"].setdefault("score", []).append(opened)
            found[c.label]["score"].append(wall)
    for c in checkouts:
        monitor = ("--model-name", MODEL, "--output", str(c.home / "reports"))
        opened, wall = c.step("monitor", *monitor)
        found[c.label]["open"]["monitor"] = [opened]
        found[c.label]["wall"]["monitor"] = [wall]
    for i in range(repeat if main else 0):
        for c in checkouts:
            least = ("--n-trials", "0", "--epochs", "2", "--refit-families", "")
            wall = c.step("main", *least, "--model-name", f"{MODEL}-main-{i}")[1]
            found[c.label]["wall"].setdefault("main", []).append(wall)
    for _ in range(repeat):
        for c in checkouts:
            found[c.label]["import mlflow"].append(c.time(["-c", "import mlflow"]))
    return found


def median(values: list[float]) -> float:
    return statistics.median(values)


def line(name: str, cells: list[float], verdict: str = "") -> None:
    print(f"{name:34}" + "".join(f"{cell:>10.2f}" for cell in cells) + verdict)


def verdict(value: float, bar: float) -> tuple[bool, str]:
    passed = value <= bar
    return passed, f"  {'ok' if passed else 'FAIL'} (<= {bar:.2f} s)"


def report(found: dict[str, dict]) -> bool:
    """Print the table (a column per checkout); True when this checkout meets every bar."""
    labels = list(found)
    this = found[labels[0]]
    print(f"{'':34}" + "".join(f"{label:>10}" for label in labels))
    mlflow_time = {x: median(found[x]["import mlflow"]) for x in labels}
    line('python -c "import mlflow"', [mlflow_time[x] for x in labels])
    ok = True
    for step in STEPS:
        passed, text = verdict(median(this["help"][step]), HELP_BAR)
        ok &= passed
        line(f"{step} --help", [median(found[x]["help"][step]) for x in labels], text)
    line("import mlflow + open a run (floor)", [median(found[x]["open"]["floor"]) for x in labels])
    for step in ("etl", "baseline", "score", "monitor"):
        opened = [median(found[x]["open"][step]) for x in labels]
        passed, text = verdict(opened[0], RUN_OPEN_EXTRA + mlflow_time[labels[0]])
        ok &= passed or step == "baseline"  # baseline: reported, not among the bars
        line(f"{step}: start -> run opened", opened, text)
    walls = [median(found[x]["score"]) for x in labels]
    passed, text = verdict(walls[0], SCORE_RATIO * mlflow_time[labels[0]])
    ok &= passed
    line("score, 10 rows, end to end", walls, text)
    line(
        "  the same / import mlflow",
        [w / mlflow_time[x] for w, x in zip(walls, labels, strict=True)],
    )
    line("monitor, end to end", [median(found[x]["wall"]["monitor"]) for x in labels])
    if "main" in this["wall"]:
        mains = [median(found[x]["wall"]["main"]) for x in labels]
        line("main, least work, end to end", mains)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another checkout, measured alongside")
    parser.add_argument("--label", default="this", help="this checkout's column")
    parser.add_argument("--compare-label", default="compared", help="its column")
    parser.add_argument(
        "--main", action="store_true", help="also main with the least work, end to end"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        checkouts = [Checkout(args.label, ROOT, Path(tmp))]
        if args.compare:
            checkouts.append(Checkout(args.compare_label, args.compare.resolve(), Path(tmp)))
        found = measure(checkouts, args.repeat, Path(tmp), args.main)
    print(f"load average after: {os.getloadavg()[0]:.2f}; medians of {args.repeat}, seconds")
    ok = report(found)
    print("bars:", "all met" if ok else "NOT all met")


if __name__ == "__main__":
    main()
