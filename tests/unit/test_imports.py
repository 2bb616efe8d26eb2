"""Imports by need: what each entry point loads, read from `sys.modules` of a fresh
process (CONTRIBUTING.md, "Imports by need").

- `--help` and a refused parameter load no library beyond click: not MLflow, not pandas
  (0.75 s alone on 2 cores; `--help` has 1 s).
- A step's own module (`mlcycle.steps.<step>`, imported when its run has opened) loads
  MLflow and only the heavy modules its table row allows; the others arrive inside the
  functions that need them (TensorFlow when a network is trained or loaded, Evidently
  when monitor measures drift, scikit-learn's model selection when etl splits)."""

import json
import subprocess
import sys

import pytest

from mlcycle import config

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
    "blend",
)
# Watched: each costs a second or more to import on 2 cores, or starts a runtime.
HEAVY = (
    "mlflow",
    "pyspark",
    "tensorflow",
    "keras",
    "evidently",
    "sklearn.model_selection",
    "optuna",
)
# Never loaded by --help or a refused parameter, besides HEAVY.
NOT_FOR_OPTIONS = ("pandas", "numpy", "sklearn", "requests")
# What a step's module may load when its run opens, beyond MLflow (every step's code
# logs) and pyspark (`import mlflow` loads it whenever it is installed). Why each:
# scikit-learn's preprocessing modules import its model selection (monitor imports the
# preprocessor's builder); optimize tunes, and retrain reads the network family, which
# keeps its Optuna search space beside its fit.
MAY_IMPORT = {
    "etl": set(),
    "baseline": set(),
    "optimize": {"optuna"},
    "retrain": {"optuna"},
    "monitor": {"sklearn.model_selection"},
    "main": set(),
    "score": set(),
    "rollback": set(),
    "feedback": set(),
    "watch": set(),
    "blend": set(),
}
ALWAYS = {"mlflow", "pyspark"}

# Runs the command as `python -m entrypoints.STEP ARGS` would, then prints what loaded.
RUN_COMMAND = """
import json, sys
from entrypoints.{step} import main
try:
    main({args!r}, prog_name="{step}")
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""
IMPORT_STEP = """
import json, sys
import mlcycle.steps.{step}
print("MODULES " + json.dumps(sorted(sys.modules)))
"""


def loaded(code: str, refused: bool = False) -> set[str]:
    """The modules a fresh interpreter holds after running `code` from the project (a
    refused parameter: after its one-line refusal)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=config.PROJECT_ROOT, capture_output=True, text=True
    )
    if refused:
        assert "mlcycle error: parameter" in done.stderr, done.stderr[-2000:]
    else:
        assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def heavy_in(modules: set[str], watched=HEAVY) -> set[str]:
    return {name for name in watched if name in modules}


@pytest.mark.parametrize("step", STEPS)
def test_help_loads_no_library(step):
    modules = loaded(RUN_COMMAND.format(step=step, args=["--help"]))
    assert heavy_in(modules, HEAVY + NOT_FOR_OPTIONS) == set()


@pytest.mark.parametrize(
    ("step", "args"),
    [
        ("etl", ["--seed", "-1"]),
        ("score", ["--engine", "dask"]),
        ("monitor", ["--confidence", "1"]),
        ("main", ["--n-trials", "-1"]),
        ("rollback", ["--to-version", "v1"]),
    ],
)
def test_a_refused_parameter_loads_no_library(step, args):
    modules = loaded(RUN_COMMAND.format(step=step, args=args), refused=True)
    assert heavy_in(modules, HEAVY + NOT_FOR_OPTIONS) == set()


def test_the_check_sees_a_heavy_module():
    assert heavy_in(
        loaded('import json, sys, optuna\nprint("MODULES " + json.dumps(sorted(sys.modules)))')
    ) == {"optuna"}


@pytest.mark.integration  # imports MLflow and more in ten processes: ~30 s on 2 cores
def test_each_step_loads_only_what_its_table_row_allows():
    procs = {
        step: subprocess.Popen(
            [sys.executable, "-c", IMPORT_STEP.format(step=step)],
            cwd=config.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for step in STEPS
    }
    found = {}
    for step, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        line = next(x for x in out.splitlines() if x.startswith("MODULES "))
        found[step] = heavy_in(set(json.loads(line.removeprefix("MODULES "))))
    expected = {step: ALWAYS | allowed for step, allowed in MAY_IMPORT.items()}
    grown = {
        step: sorted(found[step] - expected[step]) for step in STEPS if found[step] - expected[step]
    }
    assert not grown, f"heavy modules a step loads but its row does not allow: {grown}"
    # A row that allows more than the step loads is stale: tighten it.
    stale = {
        step: sorted(expected[step] - found[step]) for step in STEPS if expected[step] - found[step]
    }
    assert not stale, f"allowed but no longer loaded (tighten MAY_IMPORT): {stale}"
