"""Where a batch's predictions are written: the output parameter read as a file or a
folder, timestamped names, the writability check made before any work, and the lock
that keeps two runs from writing the same output (score on both engines).

A run claims its output before the model loads: `<output>.lock` is created beside it
with O_EXCL (atomic, also on NFS v3+), holding the pid and host, and removed when the
run ends. A second run asking for the same file is refused in one line; one asking for
a timestamped name (the default, or a folder) takes the next free name instead. A lock
left by a process of this host that no longer exists is taken over."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mlcycle.errors import MlcycleError

SUFFIX = ".parquet"


def stamped_file(folder: Path, now: datetime | None = None) -> Path:
    """<folder>/<UTC time>.parquet; -2, -3... for a second file of the same second."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path, n = folder / f"{stamp}{SUFFIX}", 1
    while path.exists() or lock_path(path).exists():
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
    """The nearest existing folder above path, checked writable before any work by
    creating and removing a file in it (os.access says yes to root on /proc, and to
    anyone on a read-only mount)."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise MlcycleError(f"parameter output: cannot write {path}: {folder} is not a folder")
    probe = folder / f".mlcycle-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        raise MlcycleError(
            f"parameter output: cannot write {path}: no file can be created in {folder} "
            f"({exc.strerror})"
        ) from exc
    return folder


# ------------------------------------------------------------------------- the lock

LOCK_SUFFIX = ".lock"
# A lock file just created holds no pid for a moment: younger than this, it is busy.
FRESH_SECONDS = 10.0


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def stamped(output: str, path: Path) -> bool:
    """Whether path is a timestamped name chosen here (then another one may be taken)."""
    return not output or Path(output).expanduser().name != path.name


@contextlib.contextmanager
def claimed(path: Path, renamable: bool = False) -> Iterator[Path]:
    """Hold the output's lock while the run writes it; yield the path to write. Folders
    created for it are removed again if the run leaves them empty."""
    writable_ancestor(path)
    created = _make_folders(path.parent)
    try:
        while not _take(lock_path(path)):
            if not renamable:
                raise MlcycleError(
                    f"parameter output: {path} is being written by another run "
                    f"({_holder_text(lock_path(path))}); wait for it or choose another output"
                )
            path = stamped_file(path.parent)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock_path(path).unlink()
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing was written there


def _make_folders(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made, folder in enumerate(reversed(missing)):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for done in missing[len(missing) - made :]:
                with contextlib.suppress(OSError):
                    done.rmdir()
            raise MlcycleError(f"parameter output: cannot create {folder}: {exc.strerror}") from exc
    return list(reversed(missing))


def _take(lock: Path) -> bool:
    """Create the lock atomically; a stale one (its process gone) is removed first."""
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(lock):
                return False
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        except OSError as exc:
            raise MlcycleError(
                f"parameter output: cannot write beside {lock.parent}: {exc.strerror}"
            ) from exc
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        return True
    return False


def _holder(lock: Path) -> tuple[int, str] | None:
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _holder_text(lock: Path) -> str:
    holder = _holder(lock)
    return f"pid {holder[0]} on {holder[1]}, lock {lock}" if holder else f"lock {lock}"


def _stale(lock: Path) -> bool:
    """A lock of a process of this host that has ended; one of another host is trusted
    (its process cannot be seen from here), one without a pid is busy while fresh."""
    holder = _holder(lock)
    if holder is None:
        try:
            return time.time() - lock.stat().st_mtime > FRESH_SECONDS
        except FileNotFoundError:
            return True
    pid, host = holder
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
