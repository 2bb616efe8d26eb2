"""`make run` on a fresh clone, as a new user's first command: the environment (`make
venv`: a virtualenv, uv, `uv sync` from uv.lock, with the package cache warm), then the
pipeline (`make run` itself: `mlflow run . -e main` with the MLproject defaults, and the
summary), each timed on its own; the quality of the champion it leaves (monitor's
`champion_current_test_<metric>` after the promotion decision, or the challenger's when
promoted).

With `--compare GITREF` the same is done on a clone at that commit, the two alternating
(a busy moment hits both alike). Bars (DESIGN.md, "first command"): `make run` <= 3 min in
total, the pipeline alone <= 2 min; the bundled scenario's quality within 0.005 of 0.934.

    .venv/bin/python benchmarks/bench_first_run.py [--repeat 2] [--compare cbdb0e6]
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
TOTAL_BAR, PIPELINE_BAR = 180.0, 120.0
QUALITY, QUALITY_SLACK = 0.934, 0.005

QUALITY_OF = """
import mlflow
run = mlflow.search_runs(search_all_experiments=True, output_format="list",
    filter_string="tags.`mlcycle.step` = 'monitor'", order_by=["attributes.start_time DESC"])[0]
promoted = run.data.tags.get("mlcycle.promotion.decision") == "promoted"
side = "challenger" if promoted else "champion"
metric = next(k for k in run.data.metrics if k.startswith(f"{side}_current_test_")
              and k.rsplit("_", 1)[1] in ("r2", "f1"))
print(run.data.metrics[metric])
"""


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{done.stderr[-3000:]}")
    return seconds


def first_run(ref: str, tmp: Path, index: int) -> dict[str, float]:
    """A fresh clone of this checkout at `ref`; its `make venv`, `make run`, quality."""
    clone = tmp / f"{ref}-{index}"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", ref], cwd=clone, check=True)
    # The clone's own store and outputs, whatever this shell points MLflow at.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLCYCLE_"))}
    env.pop("VIRTUAL_ENV", None)
    venv = timed(["make", "venv"], clone, env)
    pipeline = timed(["make", "run"], clone, env)
    store = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}"}
    quality = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-c", QUALITY_OF],
        cwd=clone,
        env=store,
        capture_output=True,
        text=True,
        check=True,
    )
    return {"venv": venv, "pipeline": pipeline, "quality": float(quality.stdout.split()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--compare", help="a git ref of this repository, measured alongside")
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    refs = [head] + ([args.compare] if args.compare else [])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    found: dict[str, list[dict]] = {ref: [] for ref in refs}
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as tmp:
        for index in range(args.repeat):
            for ref in refs:
                found[ref].append(first_run(ref, Path(tmp), index))
                print(f"  {ref} #{index + 1}: {found[ref][-1]}", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}; medians of {args.repeat}, seconds")
    ok = True
    for ref, runs in found.items():
        venv = statistics.median(r["venv"] for r in runs)
        pipeline = statistics.median(r["pipeline"] for r in runs)
        quality = statistics.median(r["quality"] for r in runs)
        total = venv + pipeline
        met = total <= TOTAL_BAR and pipeline <= PIPELINE_BAR and quality >= QUALITY - QUALITY_SLACK
        ok &= met if ref == head else True
        print(
            f"{ref:>10}: environment {venv:6.1f} | pipeline {pipeline:6.1f} | make run "
            f"{total:6.1f} (bars {TOTAL_BAR:.0f} / {PIPELINE_BAR:.0f}) | champion's current_test "
            f"{quality:.4f} (>= {QUALITY - QUALITY_SLACK:.3f}){'' if met else '  MISSED'}"
        )
    print("bars:", "all met" if ok else "NOT all met")


if __name__ == "__main__":
    main()
