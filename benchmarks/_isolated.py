"""The environment of a benchmark's step processes: everything they write stays in the
benchmark's own folder, never in the checkout (a user's mlflow.db, mlruns/, reports/ and
.mlcycle/ are theirs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def isolated_env(folder: Path) -> dict[str, str]:
    """A SQLite store in `folder` whose artifacts stay there too (left to itself, the first
    process to open a store puts them under ./mlruns of its working directory), the
    reports and the inference log beside it; os.environ otherwise."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    SqlAlchemyStore(uri, (folder / "artifacts").as_uri())
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLCYCLE_OUTPUT_ROOT": str(folder),
        "MLCYCLE_INFERENCE_DIR": str(folder / "inference"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("MLFLOW_RUN_ID", None)
    return env
