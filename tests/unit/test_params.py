"""Each step's parameters dataclass is the one source of its defaults: MLproject, the
click options and the step agree with it, parameter by parameter."""

import dataclasses
import importlib
import re

import click
import pytest
from mlflow.projects._project_spec import load_project

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.params import check, fields_of

STEPS = {
    "etl": "EtlParams",
    "baseline": "BaselineParams",
    "optimize": "OptimizeParams",
    "retrain": "RetrainParams",
    "blend": "BlendParams",
    "monitor": "MonitorParams",
    "main": "MainParams",
    "score": "ScoreParams",
    "rollback": "RollbackParams",
    "feedback": "FeedbackParams",
    "watch": "WatchParams",
}
# MLproject knows float and string only: whole numbers are floats, flags are strings.
MLPROJECT_TYPE = {int: "float", float: "float", str: "string", bool: "string"}


def _params_class(step):
    return getattr(importlib.import_module(f"mlcycle.steps.{step}"), STEPS[step])


def _as_mlproject(value, kind):
    if kind is bool:
        return str(value).lower()
    if kind in (int, float):
        return float(value)
    return value


@pytest.mark.parametrize("step", sorted(STEPS))
def test_mlproject_declares_every_parameter_with_the_dataclass_default_and_type(step):
    entry = load_project(str(config.PROJECT_ROOT)).get_entry_point(step)
    cls = _params_class(step)
    declared = {name: (p.type, p.default) for name, p in entry.parameters.items()}
    expected = {
        f.name: (MLPROJECT_TYPE[kind], _as_mlproject(f.default, kind)) for f, kind in fields_of(cls)
    }
    actual = {
        name: (kind, float(default) if kind == "float" else str(default))
        for name, (kind, default) in declared.items()
    }
    assert actual == expected


@pytest.mark.parametrize("step", sorted(STEPS))
def test_the_click_command_takes_its_options_from_the_dataclass(step):
    command = importlib.import_module(f"entrypoints.{step}").main
    cls = _params_class(step)
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    assert list(options) == [f.name for f in dataclasses.fields(cls)]
    for field in dataclasses.fields(cls):
        option = options[field.name]
        assert option.default == field.default, field.name
        assert option.show_default and option.help, field.name
        assert option.opts == ["--" + field.name.replace("_", "-")]


@pytest.mark.parametrize("step", sorted(STEPS))
def test_the_defaults_pass_their_own_checks(step):
    check(_params_class(step)())


@pytest.mark.parametrize(
    ("step", "changes", "message"),
    [
        ("etl", {"task": "clustering"}, "parameter task must be one of auto, regression"),
        ("etl", {"seed": -1}, "parameter seed must be >= 0, got -1"),
        ("optimize", {"family": "xgb"}, "parameter family must be one of rf, nn, hgb, got 'xgb'"),
        ("optimize", {"n_jobs": 0}, "parameter n_jobs must be >= 1 (or -1), got 0"),
        ("retrain", {"window": "last"}, "parameter window must be one of auto, current, all"),
        ("retrain", {"members": 0}, "parameter members must be >= 1, got 0"),
        ("monitor", {"sample_size": -5}, "parameter sample_size must be >= 0, got -5"),
        ("main", {"n_trials": -1}, "parameter n_trials must be >= 0, got -1"),
    ],
)
def test_a_value_outside_its_set_or_bound_is_one_line_naming_the_parameter(step, changes, message):
    params = dataclasses.replace(_params_class(step)(), **changes)
    with pytest.raises(MlcycleError, match=re.escape(message)):
        check(params)


def test_n_jobs_minus_one_means_one_per_core_and_passes():
    params = dataclasses.replace(_params_class("optimize")(), n_jobs=-1)
    check(params)


@pytest.mark.parametrize(
    "name", ["a/b", "../../x", "", "  ", " padded", "a:b", "x%", "a@b", "..", "t\tx"]
)
@pytest.mark.parametrize("step", ["baseline", "optimize", "retrain", "monitor", "main"])
def test_a_model_name_the_registry_would_refuse_or_that_escapes_a_folder_is_refused(step, name):
    params = dataclasses.replace(_params_class(step)(), model_name=name)
    with pytest.raises(MlcycleError, match=r"^parameter model_name .* cannot name a registered"):
        check(params)


@pytest.mark.parametrize("name", ["loan-amount", "churn v2", "Prêt_immobilier.2026"])
def test_ordinary_model_names_pass(name):
    check(dataclasses.replace(_params_class("baseline")(), model_name=name))


ALERT_STEPS = ["monitor", "main", "rollback", "watch"]


@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://x/y", "http://", "http://[::1", "hooks.slack.com/services/T/B/C"]
)
@pytest.mark.parametrize("step", ALERT_STEPS)
def test_an_alert_url_that_cannot_be_posted_to_is_refused_before_the_run(step, url):
    # Accepted, it failed only when an alert fired, weeks later in a scheduled job: a
    # warning nobody reads, or (an unparsable host) a traceback from the step itself.
    params = dataclasses.replace(_params_class(step)(), alert_url=url)
    with pytest.raises(MlcycleError, match=r"^parameter alert_url .*http"):
        check(params)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://hooks.slack.com/services/T/B/C",
        "http://127.0.0.1:8080/hooks#json",
        "http://[::1]:9000/x#slack",
    ],
)
def test_ordinary_alert_urls_pass(url):
    check(dataclasses.replace(_params_class("watch")(), alert_url=url))


@pytest.mark.parametrize("step", ["main", "watch"])
def test_an_env_manager_mlflow_does_not_know_is_refused_before_the_run(step):
    # Accepted, main failed on its first child run with MLflow's traceback and exit 1.
    params = dataclasses.replace(_params_class(step)(), env_manager="banana")
    with pytest.raises(MlcycleError, match="parameter env_manager must be one of local"):
        check(params)
