"""The project's contract files agree with each other and with MLflow."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from mlflow.projects._project_spec import load_project
from mlflow.utils.environment import _PythonEnv

from mlcycle import config
from mlcycle.ingest.datagen import write_bundled

ROOT = config.PROJECT_ROOT


def _pins(lines):
    """{(name[extras], marker): version} of exact pins; anything looser fails."""
    out = {}
    for line in lines:
        match = re.match(
            r"^([A-Za-z0-9_.\-]+(?:\[[A-Za-z0-9_,\-]+\])?)==([^;\s]+)\s*(;.*)?$", line.strip()
        )
        assert match, f"not an exact pin: {line!r}"
        out[(match[1].lower(), (match[3] or "").replace("'", '"').replace(" ", ""))] = match[2]
    return out


def _normalized(name: str) -> str:
    """The name as uv.lock writes it (PEP 503), without extras: Flask-WTF -> flask-wtf."""
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()


def test_conda_yaml_and_pyproject_pin_the_same_versions():
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_list = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _pins(pip_list) == _pins(project["dependencies"])
    assert "python=3.11" in conda["dependencies"]


def test_uv_lock_holds_every_pin_of_pyproject():
    """`make venv` installs exactly uv.lock: every pinned package, runtime and dev, is
    locked at its pin (a package locked twice, for two platforms, at its pin both times)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {}
    for package in lock["package"]:
        locked.setdefault(package["name"], set()).add(package["version"])
    pins = _pins(project["dependencies"]) | _pins(project["optional-dependencies"]["dev"])
    assert len(pins) > 20
    for (name, _marker), version in pins.items():
        assert locked.get(_normalized(name)) == {version}, (name, version)
    assert lock["requires-python"] == "==3.11.*"


def test_uv_lock_is_up_to_date_with_pyproject():
    """A pin changed in pyproject.toml without `uv lock` fails here, as `make venv` would.
    The check resolves nothing when the lock is current: no network is needed."""
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run(
        [str(uv), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_the_makefile_bootstraps_the_locked_uv():
    """The uv that `make venv` installs first is the one uv.lock then keeps."""
    makefile = (ROOT / "Makefile").read_text()
    bootstrap = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert bootstrap and [p["version"] for p in lock["package"] if p["name"] == "uv"] == [
        bootstrap[1]
    ]
    assert "uv sync --quiet --locked --extra dev" in makefile


def test_mlflow_turns_conda_yaml_into_a_python_environment():
    env = _PythonEnv.from_conda_yaml(str(ROOT / "conda.yaml"))
    assert env.python.startswith("3.11")
    assert any(dep.startswith("mlflow==3.17") for dep in env.dependencies)
    assert any(dep.startswith("pandas==2.") for dep in env.dependencies)


def test_mlproject_entry_points_follow_the_design_contract():
    project = load_project(str(ROOT))
    expected = {
        "etl": {"reference", "current", "target", "task", "drop_columns", "test_size", "seed"},
        "baseline": {
            "etl_run",
            "model_name",
            "n_estimators",
            "max_depth",
            "min_samples_split",
            "min_samples_leaf",
            "class_weight",
            "seed",
        },
        "optimize": {
            "etl_run",
            "model_name",
            "family",
            "n_trials",
            "timeout",
            "n_jobs",
            "storage",
            "study_name",
            "metric",
            "seed",
        },
        "retrain": {
            "etl_run",
            "model_name",
            "epochs",
            "batch_size",
            "learning_rate",
            "base_model",
            "strategy",
            "window",
            "params_from",
            "patience",
            "seed",
        },
        "monitor": {
            "etl_run",
            "model_name",
            "champion",
            "challenger",
            "output",
            "promote",
            "min_improvement",
            "tolerance",
            "sample_size",
        },
        "main": {
            "reference",
            "current",
            "target",
            "task",
            "drop_columns",
            "test_size",
            "seed",
            "model_name",
            "n_trials",
            "epochs",
            "promote",
            "use_cache",
        },
    }
    for name, params in expected.items():
        entry = project.get_entry_point(name)
        assert params <= set(entry.parameters), name
        for param in entry.parameters.values():
            assert param.default is not None, f"{name}.{param.name} has no default"
        # Every parameter is passed to the command under its kebab-case flag.
        for param in entry.parameters:
            assert f"--{param.replace('_', '-')} {{{param}}}" in entry.command, (name, param)


def test_bundled_data_regenerates_byte_for_byte(tmp_path):
    """df_old, df_new and every stream batch; no batch in data/ that make data would not write."""
    write_bundled(tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.csv"))
    assert written == sorted(p.relative_to(ROOT / "data") for p in (ROOT / "data").rglob("*.csv"))
    assert len(written) >= 8
    for name in written:
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / name).read_bytes(), name


def test_relative_sqlite_uris_are_made_absolute_against_the_launch_folder(tmp_path):
    from mlcycle import config

    assert config.absolute_sqlite_uri("sqlite:///mlflow.db", tmp_path) == (
        f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    assert config.absolute_sqlite_uri("sqlite:///a/m.db?timeout=5", tmp_path) == (
        f"sqlite:///{tmp_path / 'a' / 'm.db'}?timeout=5"
    )
    for kept in ("sqlite:////srv/m.db", "http://127.0.0.1:5000", "postgresql://h/db"):
        assert config.absolute_sqlite_uri(kept, tmp_path) == kept


def test_a_relative_sqlite_uri_resolves_against_the_folder_mlflow_run_started_in(tmp_path):
    """Real processes, real /proc: a step (cwd: MLflow's checkout) under a process whose
    command line is `mlflow run` (cwd: the user's folder) resolves sqlite:///mlflow.db in
    the user's folder; with no such parent, in its own working folder."""
    import os
    import subprocess
    import sys

    user, checkout = tmp_path / "user", tmp_path / "checkout"
    user.mkdir()
    checkout.mkdir()
    step = [sys.executable, "-c", "from mlcycle import config; print(config.tracking_uri())"]
    launcher = tmp_path / "bin" / "mlflow"
    launcher.parent.mkdir()
    # Starts the step through a shell, as MLflow does, from the checkout.
    launcher.write_text(
        "import shlex, subprocess, sys\n"
        f"subprocess.run(['/bin/sh', '-c', shlex.join({step!r})], cwd={str(checkout)!r},"
        " check=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI="sqlite:///mlflow.db")

    def uri(*cmd, cwd):
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert uri(sys.executable, str(launcher), "run", ".", cwd=user) == (
        f"sqlite:///{user.resolve() / 'mlflow.db'}"
    )
    assert uri(*step, cwd=checkout) == f"sqlite:///{checkout.resolve() / 'mlflow.db'}"
