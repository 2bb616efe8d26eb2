"""The workflow cache of `main`: run a step, or reuse a finished identical one.

A step is identical when its entry point, its parameters (as the strings MLflow logs),
the code version (git commit plus a hash of uncommitted changes to tracked files), the
data files it reads (content, and path relative to the project root), and the model
versions its model URIs resolve to all match. These go into one key, stored as a tag on
the step's run; a FINISHED run with the same key is reused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import ExecutionException
from mlflow.projects import load_project
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.datasets import newest_finished
from mlcycle.lifecycle import registry

log = logging.getLogger(__name__)

CACHE_KEY_TAG = "mlcycle.cache_key"
CODE_VERSION_TAG = "mlcycle.code_version"
# What a hash of the code covers when the project is not a git checkout.
CODE_GLOBS = (
    "MLproject",
    "conda.yaml",
    "mlcycle/**/*.py",
    "entrypoints/*.py",
    "reports/templates/*",
)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version(root: Path = config.PROJECT_ROOT) -> str:
    """'<commit>+<hash of uncommitted changes>' in a git checkout, else a content hash."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changes = git("diff", "HEAD", "--binary")
    except (OSError, subprocess.CalledProcessError):
        digest = hashlib.sha256()
        for pattern in CODE_GLOBS:
            for path in sorted(root.glob(pattern)):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(file_digest(path).encode())
        return f"content-{digest.hexdigest()[:16]}"
    if not changes:
        return commit
    return f"{commit}+{hashlib.sha256(changes.encode()).hexdigest()[:16]}"


@dataclass
class Step:
    """One child run of main: an entry point, its parameters, what it reads."""

    name: str
    parameters: dict[str, str]
    data_files: list[Path] = field(default_factory=list)
    model_uris: list[str] = field(default_factory=list)


def full_parameters(entry_point: str, given: dict, root: Path = config.PROJECT_ROOT) -> dict:
    """Defaults merged with the given values, all as strings: what MLflow logs."""
    spec = load_project(str(root)).get_entry_point(entry_point)
    merged = {name: param.default for name, param in spec.parameters.items()}
    merged.update(given)
    return {k: "" if v is None else str(v) for k, v in sorted(merged.items())}


def resolved_models(uris: list[str]) -> dict[str, str]:
    """Each model URI -> 'name/version' it points at now ('' when it points nowhere)."""
    out = {}
    for uri in uris:
        try:
            version = registry.resolve_version(uri)
        except MlcycleError:
            version = None
        out[uri] = f"{version.name}/{version.version}" if version else ""
    return out


def data_identity(path: Path, root: Path = config.PROJECT_ROOT) -> str:
    """How a data file counts in a key: its content, and its path relative to the project
    root when it lies inside (`mlflow run <git URL>` runs in a new temporary checkout each
    time, and the same files there must find the same runs). The path stays in because the
    reused run's logged dataset inputs name it; a file outside keeps its absolute path,
    which no checkout changes."""
    resolved = path.resolve()
    try:
        name = resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        name = str(resolved)
    return f"{name}@sha256:{file_digest(resolved)}"


def step_key(step: Step, code: str, root: Path = config.PROJECT_ROOT) -> str:
    """The step's cache key; a parameter naming one of its data files counts as that
    file's identity (data_identity), not as the path string it was given."""
    identities = {str(p): data_identity(p, root) for p in step.data_files}
    parameters = {
        name: f"data:{identities[value]}" if value in identities else value
        for name, value in full_parameters(step.name, step.parameters, root).items()
    }
    payload = {
        "entry_point": step.name,
        "parameters": parameters,
        "code": code,
        "data": sorted(identities.values()),
        "models": resolved_models(step.model_uris),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def find_finished(key: str, experiment_id: str):
    """The newest FINISHED run with this cache key, or None."""
    return newest_finished(experiment_id, CACHE_KEY_TAG, key)


def script_arguments(step: Step, root: Path = config.PROJECT_ROOT) -> list[str] | None:
    """The arguments MLproject's command gives the step's script, when that command is
    `python -m entrypoints.<step>` (as every mlcycle entry point's is); None otherwise."""
    spec = load_project(str(root)).get_entry_point(step.name)
    words = shlex.split(spec.compute_command(step.parameters, storage_dir=None))
    if words[:3] != ["python", "-m", f"entrypoints.{step.name}"]:
        return None
    return words[3:]


def run_or_reuse(
    step: Step,
    *,
    parent_run_id: str,
    experiment_id: str,
    env_manager: str,
    use_cache: bool,
    code: str,
    root: Path = config.PROJECT_ROOT,
    run_here=None,
):
    """Reuse a finished identical run, or run the step as a child of the parent run.

    With env_manager=local the child needs no environment of its own: given `run_here`
    (`mlcycle.cli.run_child`), the step runs in this process, from MLproject's command
    line for it; otherwise, and for any other env_manager, `mlflow.projects.run` starts
    its process. Returns (run, reused)."""
    key = step_key(step, code, root)
    if use_cache and (cached := find_finished(key, experiment_id)):
        log.info("step %s: reusing finished identical run %s", step.name, cached.info.run_id)
        return cached, True
    client = mlflow.MlflowClient()
    # Created here, so the step is a child of main and carries its key from the start;
    # `mlflow.projects.run` then logs into this very run.
    child = client.create_run(
        experiment_id,
        tags={
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            MLFLOW_RUN_NAME: step.name,
            CACHE_KEY_TAG: key,
            CODE_VERSION_TAG: code,
            config.STEP_TAG: step.name,
        },
    )
    run_id = child.info.run_id
    log.info("step %s: running as child run %s", step.name, run_id)
    failure = None
    try:
        here = script_arguments(step, root) if run_here and env_manager == "local" else None
        if here is not None:
            with contextlib.chdir(root):
                if exit_code := run_here(step.name, here, run_id, experiment_id):
                    failure = ExecutionException(f"entry point {step.name} exited {exit_code}")
        else:
            mlflow.projects.run(
                str(root),
                entry_point=step.name,
                parameters=step.parameters,
                env_manager=env_manager,
                experiment_id=experiment_id,
                run_id=run_id,
                synchronous=True,
            )
    except ExecutionException as exc:  # a refused parameter, or the child's process failed
        failure = exc
    except BaseException as exc:
        # A stop (or anything else) before the step opened its run, or that left it open:
        # the run it was given must not stay RUNNING (MLflow's own wait does the same).
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    if failure is not None:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
        raise MlcycleError(
            f"step {step.name} failed (child run {run_id}); see its log above. "
            "Run main again once fixed: finished steps are reused"
        ) from failure
    return client.get_run(run_id), False


def path_digest(path: Path) -> str:
    """A file's content hash; for a folder of parts, a hash of its parts' names and hashes."""
    if path.is_file():
        return file_digest(path)
    parts = sorted(p for p in path.rglob("*") if p.is_file())
    lines = "".join(f"{p.relative_to(path)} {file_digest(p)}\n" for p in parts)
    return hashlib.sha256(lines.encode()).hexdigest()
