"""What every entry point shares: logging set-up, the tracking store, one run per step,
and turning user mistakes into one line and exit code 2."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings

import click
import mlflow
from mlflow.exceptions import MlflowException

from mlcycle import config, signals, telemetry
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import alerts
from mlcycle.params import fields_of
from mlcycle.scaleout import remote

log = logging.getLogger("mlcycle")


class WholeNumber(click.ParamType):
    """An integer that also accepts '60.0': MLproject has no int type, only float."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return int(number)


class Flag(click.ParamType):
    """true/false, yes/no, 1/0: MLproject parameters are strings."""

    name = "boolean"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off", ""):
            return False
        self.fail(f"{value!r} is not true or false", param, ctx)


INT = WholeNumber()
BOOL = Flag()


_CLICK_TYPES = {int: INT, float: click.FLOAT, bool: BOOL, str: click.STRING}


def options_from(params_cls):
    """Decorate a click command with one option per field of a step's parameters
    dataclass: the kebab-case name, the type, the default and the help all come from the
    dataclass, the single source the MLproject agreement test compares with."""

    def decorate(command):
        for field, kind in reversed(fields_of(params_cls)):
            text = field.metadata.get("help", "")
            if field.metadata.get("choices"):
                text += f" (one of: {', '.join(field.metadata['choices'])})"
            command = click.option(
                "--" + field.name.replace("_", "-"),
                field.name,
                type=_CLICK_TYPES[kind],
                default=field.default,
                show_default=True,
                help=text,
            )(command)
        return command

    return decorate


def entry_point(step: str, params_cls, execute, doc: str, show=None) -> click.Command:
    """The click command of an entry point: its options from the step's parameters
    dataclass, the parameters checked before any run opens, `execute(params)` in the
    step's run, then the lines `show(result)` returns (paths a person opens next)."""

    @click.command(help=" ".join(doc.split(": ", 1)[1].split()))
    @options_from(params_cls)
    @step_command
    def main(**options):
        params = params_cls(**options).validate()
        with step_run(step, vars(params)) as run:
            try:
                result = execute(params)
            except Exception as exc:
                report_failure(step, params, run.info.run_id, exc)
                raise
        for line in show(result) if show else ():
            click.echo(line)

    return main


def report_failure(step: str, params, run_id: str, exc: Exception) -> None:
    """Post `step_failed` to the step's alert_url, if it has one (bounded, never raises)."""
    url = getattr(params, "alert_url", "")
    if not url:
        return
    alerts.send(
        url,
        "step_failed",
        model=getattr(params, "model_name", ""),
        message=f"{step} failed: {type(exc).__name__}: {exc}"[:2000],
        run_id=run_id,
        step=step,
    )


def configure() -> None:
    """Log lines for a person; point MLflow at the project's store unless told otherwise."""
    logging.basicConfig(
        level=os.environ.get("MLCYCLE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # mlflow.system_metrics says at INFO that it skips GPU metrics, on stderr above the
    # one line a user's mistake gets.
    quiet = ("alembic", "mlflow.store", "mlflow.system_metrics", "urllib3", "evidently")
    for name in (*quiet, "absl", "h5py", "tensorflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not sys.stderr.isatty():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Advice MLflow prints for every logged frame; our schema already makes numbers doubles.
    warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent")
    warnings.filterwarnings("ignore", message=".*dataset source can be interpreted")
    uri = config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        # MLflow's own default retries a server that went away for about four minutes.
        for name, value in remote.CLIENT_RETRY_ENV.items():
            os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(uri)


def step_command(func):
    """Wrap a click command body: configure, then report MlcycleError as one line, exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        configure()
        signals.install()
        if os.environ.get("MLFLOW_RUN_ID"):  # started by `mlflow run` or by main
            signals.watch_parent()
        try:
            return func(*args, **kwargs)
        except signals.Interrupted as exc:
            click.echo(f"mlcycle: stopped by {exc}", err=True)
            signals.exit_soon(exc.exit_code)
        except MlcycleError as exc:
            click.echo(f"mlcycle error: {exc}", err=True)
            sys.exit(2)
        except MlflowException as exc:
            # A tracking server that went away is a user-facing condition, not a bug.
            message = remote.unreachable_message(exc, config.tracking_uri())
            if message is None:
                raise
            click.echo(f"mlcycle error: {message}", err=True)
            sys.exit(2)
        finally:
            signals.uninstall()

    return wrapper


@contextlib.contextmanager
def step_run(step: str, params: dict, nested: bool = False):
    """Open the step's run (the one `mlflow run` created, if any), tag it, log its params.

    Params already logged by `mlflow run` are left as they are: MLflow refuses to log a
    key twice with a different spelling of the same value ('.2' vs '0.2')."""
    # Stop requests wait while MLflow creates and ends the run (mlcycle.signals): a signal
    # inside one of its store calls would leave the run RUNNING.
    signals.hold()
    sampled = step in telemetry.STEPS  # MLflow's own switch would number samples from 0
    with mlflow.start_run(nested=nested, log_system_metrics=False if sampled else None) as run:
        try:
            signals.release()
            # Which interpreter ran the step: shows whether --env-manager isolated it.
            mlflow.set_tags({config.STEP_TAG: step, "mlcycle.python": sys.executable})
            existing = mlflow.get_run(run.info.run_id).data.params
            fresh = {k: _param_text(v) for k, v in params.items() if k not in existing}
            if fresh:
                mlflow.log_params(fresh)
            log.info("%s: run %s (experiment %s)", step, run.info.run_id, run.info.experiment_id)
            with telemetry.system_metrics(run.info.run_id) if sampled else contextlib.nullcontext():
                yield run
            signals.hold()
        except signals.Interrupted:
            signals.hold()
            _end_killed(step, run.info.run_id)
            raise
    # The run has ended FINISHED: a stop request held meanwhile acts now.
    signals.release()


def _end_killed(step: str, run_id: str) -> None:
    """End the run KILLED, through a fresh client if the signal broke the fluent one."""
    log.warning("%s: stopped; run %s ends KILLED", step, run_id)
    try:
        mlflow.end_run("KILLED")
    except Exception:  # noqa: BLE001 - the interrupted store call may have left it unusable
        mlflow.MlflowClient().set_terminated(run_id, "KILLED")


def _param_text(value) -> str:
    return "" if value is None else str(value)
