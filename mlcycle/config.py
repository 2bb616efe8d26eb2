"""Paths and defaults, derived from the project root. No side effects at import."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
REFERENCE_CSV = DATA_DIR / "df_old.csv"
CURRENT_CSV = DATA_DIR / "df_new.csv"
TEMPLATES_DIR = PROJECT_ROOT / "reports" / "templates"
REPORTS_DIR = PROJECT_ROOT / "reports"
# Where relative outputs go (reports/, predictions/, the .mlcycle/ state) when set: the
# test suite points it at a temporary folder, so no test writes into a user's checkout.
OUTPUT_ROOT_ENV = "MLCYCLE_OUTPUT_ROOT"
# Local state that is not tracked by git: Optuna journals, the workflow cache.
STATE_DIR = Path(os.environ.get(OUTPUT_ROOT_ENV) or PROJECT_ROOT) / ".mlcycle"


def output_root(default: Path = PROJECT_ROOT) -> Path:
    """The folder relative outputs are taken from: MLCYCLE_OUTPUT_ROOT, else default."""
    given = os.environ.get(OUTPUT_ROOT_ENV)
    return Path(given).expanduser() if given else default


# As MLproject declares them: relative to the project root (config.resolve_path).
DEFAULT_REFERENCE = "data/df_old.csv"
DEFAULT_CURRENT = "data/df_new.csv"
DEFAULT_TARGET = "montant_pret"
DEFAULT_DROP_COLUMNS = "nom,prenom"
DEFAULT_MODEL_NAME = "loan-amount"

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

# Tags that identify mlcycle runs whatever launched them (mlflow run, python -m, main).
STEP_TAG = "mlcycle.step"

# Closed sets and defaults the steps' parameters name, kept here (imports nothing) so
# that building an entry point's options imports no library; the modules that act on
# them import them from here.
AUTO = "auto"  # retrain's strategy and window: judged on a validation slice
TASKS = (AUTO, "regression", "classification")
# The environment managers `mlflow run` knows (mlflow.utils.env_manager), for the child
# runs main and watch start: any other value failed on the first child with a traceback.
ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")
STRATEGIES = ("finetune", "transfer", "scratch")
WINDOWS = ("current", "all")
# Evidently costs ~6 s for 100k rows x 14 columns a side and ~65 s for 1M on two cores.
# Above 1000 rows it measures drift with distances (normed Wasserstein, Jensen-Shannon,
# threshold 0.1) whose sampling error at 100k rows is orders of magnitude below that
# threshold: a sample this size gives the same verdicts as every row, much faster.
AUTO_SAMPLE_SIZE = 100_000
DEFAULT_EVIDENTLY_WORKSPACE = ".mlcycle/evidently"


def default_tracking_uri(root: Path = PROJECT_ROOT) -> str:
    """The store every step shares: absolute, so a run from a git checkout lands here too."""
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI wins; otherwise the project's own SQLite store.

    A relative SQLite URI is MLflow's own default (`sqlite:///mlflow.db`), which `mlflow
    run` hands to the step as it is. The step runs in the project folder, for a git URL a
    temporary checkout, while `mlflow run` created the run in the folder it was started
    from: the URI is made absolute against that folder, where `mlflow ui` will look."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return default_tracking_uri()
    return absolute_sqlite_uri(uri, launcher_folder())


def absolute_sqlite_uri(uri: str, base: Path) -> str:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path, mark, query = uri.removeprefix(prefix).partition("?")
    if not path or path.startswith("/") or path == ":memory:":
        return uri
    return f"{prefix}{(base / path).resolve()}{mark}{query}"


def launcher_folder() -> Path:
    """The working folder of the `mlflow run` command this process runs under, if any.

    Read from /proc (Linux), so the step's isolated environment needs no extra package;
    elsewhere, or with no such parent, the working folder."""
    pid = os.getppid()
    for _ in range(12):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            for i, arg in enumerate(args[:-1]):
                if Path(arg).name == "mlflow" and args[i + 1] == "run":
                    return Path(os.readlink(f"/proc/{pid}/cwd"))
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
    return Path.cwd()


def resolve_path(path: str) -> Path:
    """Relative paths are read from the project root, so `mlflow run` from anywhere works."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        candidate = PROJECT_ROOT / candidate
    return candidate


def from_root(path: str | Path) -> Path:
    """A folder the project writes: a relative path is taken from the project root."""
    folder = Path(path).expanduser()
    return folder if folder.is_absolute() else output_root() / folder


def report_output_folder(output: str | Path, model_name: str) -> Path:
    """OUTPUT/<model_name>/, created now: a relative OUTPUT is taken from the project root.
    A folder that cannot be written is a bad `output` parameter, found before any work."""
    folder = from_root(output) / model_name
    refused = f"parameter output: cannot write reports to {folder}"
    return writable_folder(folder, refused, f"{refused}: not writable")


def evidently_workspace_folder(text: str) -> Path | None:
    """The workspace folder a monitor parameter names, created now and writable; '' turns
    the workspace off (None). A relative path is taken from the project root, as the
    report's output is, so `mlflow run` from anywhere feeds the one `make evidently-ui`
    opens."""
    if not str(text).strip():
        return None
    folder = from_root(text)
    return writable_folder(
        folder,
        f"parameter evidently_workspace: cannot create {folder}",
        f"parameter evidently_workspace: cannot write to {folder}",
    )


def writable_folder(folder: Path, refused: str, not_writable: str) -> Path:
    """The folder, created now; one line when it cannot be created (`refused`, then why)
    or written (`not_writable`): a bad parameter, found before any work."""
    from mlcycle.errors import MlcycleError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlcycleError(f"{refused}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK):
        raise MlcycleError(not_writable)
    return folder
