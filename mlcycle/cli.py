"""What every entry point shares: logging set-up, the tracking store, one run per step,
and turning user mistakes into one line and exit code 2.

Light on purpose: `--help` and a bad parameter's refusal import neither MLflow nor any
model library (CONTRIBUTING.md, "Imports by need"). MLflow is imported by `step_run`,
when the step's run opens, and the step's own code after that (see `entry_point`)."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import importlib
import logging
import os
import sys
import threading
import traceback
import warnings

import click

from mlcycle import config, signals, telemetry
from mlcycle.errors import MlcycleError
from mlcycle.options import StepCommand, options_from

log = logging.getLogger("mlcycle")

# True while a step runs inside another step's process (`run_child`): the outer step owns
# the process's signal handlers, its parent watch and its exit.
_IN_PARENT = contextvars.ContextVar("mlcycle_in_parent", default=False)


def entry_point(step: str, params_cls, execute, doc: str, show=None) -> click.Command:
    """The click command of an entry point: its options from the step's parameters
    dataclass, the parameters checked before any run opens, `execute(params)` in the
    step's run, then the lines `show(result)` returns (paths a person opens next).

    `execute` may import the step's module on its first call (`entrypoints.later`): the
    run then opens before the step's libraries load, and `--help` loads none of them."""

    @click.command(cls=StepCommand, help=" ".join(doc.split(": ", 1)[1].split()))
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


def run_process(command: click.Command) -> None:
    """Run an entry point as its process's whole work (`python -m entrypoints.<step>`), then
    end the process without the interpreter's teardown: freeing TensorFlow's, Evidently's
    and MLflow's modules one by one took ~3 s after every step had finished (measured on
    retrain: 3.0-3.6 s between its last exit handler and the process's end). What a
    normal exit does that matters still happens, in its order: other threads are stopped
    and waited for as the interpreter does it (`threading._shutdown`), the exit handlers
    run (MLflow's, logging's), the output is flushed. An exception that escapes the
    command ends the process as usual, traceback included."""
    try:
        command()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # What the interpreter's exit does first, in its order: threading's exit callbacks (the
    # idle workers of a ThreadPoolExecutor never shut down, as MLflow's artifact uploads
    # leave theirs, are told to stop), then every non-daemon thread joined.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def report_failure(step: str, params, run_id: str, exc: Exception) -> None:
    """Post `step_failed` to the step's alert_url, if it has one (bounded, never raises)."""
    url = getattr(params, "alert_url", "")
    if not url:
        return
    from mlcycle.lifecycle import alerts

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
    configure_logging()
    open_store()


def configure_logging() -> None:
    """Log lines for a person, library chatter quieted (no library imported here)."""
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


def open_store():
    """Import MLflow and point it at the project's store (or the one the environment
    names); MLflow's module, for the caller's use."""
    uri = config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        from mlcycle.scaleout import remote

        # MLflow's own default retries a server that went away for about four minutes.
        for name, value in remote.CLIENT_RETRY_ENV.items():
            os.environ.setdefault(name, value)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


def step_command(func):
    """Wrap a click command body: configure, then report MlcycleError as one line, exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if _IN_PARENT.get():
            return _as_child(func, *args, **kwargs)
        configure_logging()
        signals.install()
        if os.environ.get("MLFLOW_RUN_ID"):  # started by `mlflow run` or by main
            signals.watch_parent()
        try:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if (stop := signals.as_interrupted(exc)) is not exc:
                    raise stop from exc
                raise
        except signals.Interrupted as exc:
            click.echo(f"mlcycle: stopped by {exc}", err=True)
            signals.exit_soon(exc.exit_code)
        except Exception as exc:
            _one_line_or_raise(exc)
        finally:
            signals.uninstall()

    return wrapper


def _as_child(func, *args, **kwargs):
    """A step's body inside its parent's process: its user mistakes are still its one line
    and exit code 2 (SystemExit, which `run_child` turns into the code); a stop request
    unwinds to the parent, which ends its own run after this one."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        _one_line_or_raise(exc)


def _one_line_or_raise(exc: Exception) -> None:
    """A user's mistake (MlcycleError), or a tracking server that went away (a user-facing
    condition, not a bug): its one line, exit code 2. Anything else is raised on."""
    message = str(exc) if isinstance(exc, MlcycleError) else _unreachable_store(exc)
    if message is None:
        raise exc
    click.echo(f"mlcycle error: {message}", err=True)
    sys.exit(2)


def run_child(entry: str, args: list[str], run_id: str, experiment_id: str) -> int:
    """Run the entry point `entry` (`entrypoints.<entry>`, its command-line `args`) in this
    process, in the child run `run_id` its parent created; the step's exit code.

    What `mlflow.projects.run` does with env_manager=local (the run's id and experiment in
    the environment, the script's command line), without a new interpreter: each child
    process paid ~5 s of Python, MLflow and store start-up, and again for every library
    the parent had already imported. The step logs, fails and stops as its own process
    would: its messages on stderr, a mistake's code 2, a bug's traceback and code 1, a stop
    request (`signals.Interrupted`) raised on into the parent."""
    given = {"MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": experiment_id}
    saved = {name: os.environ.get(name) for name in given}
    os.environ.update(given)
    token = _IN_PARENT.set(True)
    try:
        command = importlib.import_module(f"entrypoints.{entry}").main
        # Not click's `main`: it would turn a stop request into its own Abort.
        with command.make_context(f"entrypoints.{entry}", list(args)) as context:
            command.invoke(context)
        return 0
    except SystemExit as exc:
        if exc.code is None or type(exc.code) is int:
            return exc.code or 0
        click.echo(str(exc.code), err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception:
        traceback.print_exc()  # what the interpreter prints for a process's uncaught bug
        return 1
    finally:
        _IN_PARENT.reset(token)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _unreachable_store(exc: Exception) -> str | None:
    """The one line for an MlflowException saying the tracking server is not there; None
    for anything else (MLflow is not imported for this: without it, no MlflowException)."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    from mlcycle.scaleout import remote

    return remote.unreachable_message(exc, config.tracking_uri())


@contextlib.contextmanager
def step_run(step: str, params: dict, nested: bool = False):
    """Open the step's run (the one `mlflow run` created, if any), tag it, log its params.

    Params already logged by `mlflow run` are left as they are: MLflow refuses to log a
    key twice with a different spelling of the same value ('.2' vs '0.2')."""
    mlflow = open_store()
    # Stop requests wait while MLflow creates and ends the run (mlcycle.signals): a signal
    # inside one of its store calls would leave the run RUNNING. A step inside its parent's
    # process (run_child) whose parent holds them (it has moved an alias) leaves the hold
    # to the parent: releasing it here would let a stop end the parent KILLED after its move.
    own_hold = not signals.held()
    if own_hold:
        signals.hold()
    sampled = step in telemetry.STEPS  # MLflow's own switch would number samples from 0
    # Inside its parent's process the parent's run is active: the step's run opens nested.
    nested = nested or mlflow.active_run() is not None
    try:
        active = mlflow.start_run(nested=nested, log_system_metrics=False if sampled else None)
    except BaseException:
        if own_hold:
            signals.unhold()
        raise
    with active as run:
        try:
            if own_hold:
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
        except Exception as exc:
            if (stop := signals.as_interrupted(exc)) is exc:
                raise
            signals.hold(check_first=False)
            _end_killed(step, run.info.run_id)
            raise stop from exc
        except signals.Interrupted:
            signals.hold(check_first=False)
            _end_killed(step, run.info.run_id)
            raise
    # The run has ended FINISHED: a stop request held meanwhile acts now.
    if own_hold:
        signals.release()


def _end_killed(step: str, run_id: str) -> None:
    """End the run KILLED, through a fresh client if the signal broke the fluent one."""
    import mlflow

    log.warning("%s: stopped; run %s ends KILLED", step, run_id)
    try:
        mlflow.end_run("KILLED")
    except Exception:  # noqa: BLE001 - the interrupted store call may have left it unusable
        mlflow.MlflowClient().set_terminated(run_id, "KILLED")


def _param_text(value) -> str:
    return "" if value is None else str(value)
