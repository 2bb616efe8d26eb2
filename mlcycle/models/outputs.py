"""Where a batch's predictions are written: the output parameter read as a file or a
folder, timestamped names, and the writability check made before any work (score on
both engines)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mlcycle.errors import MlcycleError

SUFFIX = ".parquet"


def stamped_file(folder: Path, now: datetime | None = None) -> Path:
    """<folder>/<UTC time>.parquet; -2, -3... for a second file of the same second."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path, n = folder / f"{stamp}{SUFFIX}", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}{SUFFIX}"
    return path


def output_path(output: str, model_name: str, base: Path, parts: bool = False) -> Path:
    """Where the predictions go: by default predictions/<model_name>/<UTC time>.parquet;
    a folder (ending with '/', or existing) gets a timestamped file; else a .parquet file,
    replaced if it exists. Relative paths are taken from base. With parts (Spark), the
    .parquet name is a folder of parts, and an existing one is the output to replace."""
    if not output:
        return stamped_file(base / "predictions" / model_name)
    path = Path(output).expanduser()
    path = path if path.is_absolute() else base / path
    if output.endswith(("/", os.sep)) or (path.is_dir() and not (parts and path.suffix == SUFFIX)):
        return stamped_file(path)
    if path.suffix != SUFFIX:
        raise MlcycleError(
            "parameter output: predictions are written as Parquet, so name the "
            f"{'folder' if parts else 'file'} *{SUFFIX} (or give a folder ending with /), "
            f"got {output!r}"
        )
    return path


def writable_ancestor(path: Path) -> Path:
    """The nearest existing folder above path, checked writable before any work."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise MlcycleError(
            f"parameter output: cannot write {path}: {folder} is not a writable folder"
        )
    return folder
