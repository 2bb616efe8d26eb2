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
# Local state that is not tracked by git: Optuna journals, the workflow cache.
STATE_DIR = PROJECT_ROOT / ".mlcycle"

DEFAULT_TARGET = "montant_pret"
DEFAULT_DROP_COLUMNS = "nom,prenom"
DEFAULT_MODEL_NAME = "loan-amount"

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

# Tags that identify mlcycle runs whatever launched them (mlflow run, python -m, main).
STEP_TAG = "mlcycle.step"


def default_tracking_uri(root: Path = PROJECT_ROOT) -> str:
    """The store every step shares: absolute, so a run from a git checkout lands here too."""
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI wins; otherwise the project's own SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def resolve_path(path: str) -> Path:
    """Relative paths are read from the project root, so `mlflow run` from anywhere works."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        candidate = PROJECT_ROOT / candidate
    return candidate
