"""Every entry point checks its parameters before any work: a table of bad values, each
one line naming the parameter and exit code 2, and the store checked unchanged after
each (no run at all, no registered model, nothing written in the output folder)."""

import importlib

import mlflow
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration

CASES = [
    ("etl", ["--seed", "-1"], "parameter seed must be >= 0, got -1"),
    ("etl", ["--task", "clustering"], "parameter task must be one of auto, regression"),
    ("baseline", ["--seed", "-1"], "parameter seed must be >= 0, got -1"),
    ("baseline", ["--model-name", "a/b"], "parameter model_name 'a/b' cannot name a registered"),
    ("baseline", ["--model-name", ""], "parameter model_name '' cannot name a registered"),
    ("baseline", ["--n-estimators", "0"], "parameter n_estimators must be >= 1"),
    ("baseline", ["--max-depth", "deep"], "parameter max_depth must be an integer or empty"),
    ("optimize", ["--family", "xgb"], "parameter family must be one of rf, nn, hgb, got 'xgb'"),
    ("optimize", ["--n-jobs", "0"], "parameter n_jobs must be >= 1 (or -1), got 0"),
    ("optimize", ["--model-name", "../x"], "parameter model_name '../x' cannot name"),
    ("retrain", ["--seed", "-1"], "parameter seed must be >= 0, got -1"),
    ("retrain", ["--strategy", "warm"], "parameter strategy must be one of"),
    ("retrain", ["--epochs", "0"], "parameter epochs must be >= 1, got 0"),
    ("monitor", ["--model-name", "../../x"], "parameter model_name '../../x' cannot name"),
    ("monitor", ["--confidence", "1"], "parameter confidence must be below 1"),
    ("monitor", ["--confidence", "abc"], "parameter confidence must be a number, got 'abc'"),
    ("score", ["--engine", "dask"], "parameter engine must be one of pandas, spark, got 'dask'"),
    ("etl", ["--seed", "x"], "parameter seed: 'x' is not a whole number"),
    ("monitor", ["--sample-size", "-5"], "parameter sample_size must be a number >= 0, got -5"),
    ("main", ["--model-name", "x:y"], "parameter model_name 'x:y' cannot name"),
    ("main", ["--n-trials", "-1"], "parameter n_trials must be >= 0, got -1"),
    ("score", ["--model-name", "a@b"], "parameter model_name 'a@b' cannot name"),
    ("rollback", ["--model-name", ".."], "parameter model_name '..' cannot name"),
    ("feedback", [], "parameter labels: name the CSV of labels (-P labels=FILE)"),
    ("feedback", ["--labels", "l.csv", "--output", "x.txt"], "labelled rows are written as CSV"),
    ("feedback", ["--labels", "nowhere.csv"], "labels file not found"),
]


@pytest.mark.parametrize(("step", "args", "message"), CASES)
def test_a_bad_parameter_is_one_line_and_changes_nothing(
    module_tracking_uri, tmp_path, step, args, message
):
    command = importlib.import_module(f"entrypoints.{step}").main
    out = tmp_path / "out"
    extra = ["--output", str(out)] if step in ("monitor",) else []
    result = CliRunner().invoke(command, [*args, *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"mlcycle error: {lines[0].removeprefix('mlcycle error: ')}"], lines
    assert message in lines[0], lines
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert not mlflow.MlflowClient().search_registered_models()
    assert not out.exists() or not any(out.rglob("*"))


def test_help_lists_a_closed_set_as_its_choices():
    command = importlib.import_module("entrypoints.score").main
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0 and "[pandas|spark]" in result.output
