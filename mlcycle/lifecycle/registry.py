"""The model registry: models are handed between steps by URI, promoted by alias."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_PIN = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(?P<version>[^\s;#]+)\s*$")


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def alias_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


# What "no such model or alias" looks like: a 404, or a 403 from an authenticated server,
# which refuses to say whether a model it won't show exists. Anything else (a server
# that went away) must not read as "no champion".
_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "INVALID_PARAMETER_VALUE")


def version_for_alias(name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _ABSENT:
            return None
        raise


def require_registered(name: str) -> None:
    """MlcycleError naming the registered models when `name` is not one of them: a step
    that only reads a model (watch) would otherwise judge an empty history and say
    nothing is wrong."""
    try:
        client().get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code not in _ABSENT:
            raise
    known = sorted(m.name for m in client().search_registered_models(max_results=50))
    raise MlcycleError(
        f"model {name!r} is not registered: train it first (mlflow run . -e main -P "
        f"model_name={name}); registered: {', '.join(known) or 'none'}"
    )


def resolve_version(uri: str) -> ModelVersion | None:
    """models:/NAME@alias or models:/NAME/VERSION -> the registered version; None otherwise.

    Raises MlcycleError when the URI names a registry entry that does not exist."""
    if match := _ALIAS_URI.match(uri):
        version = version_for_alias(match["name"], match["alias"])
        if version is None:
            raise MlcycleError(f"model {uri} does not exist in the registry")
        return version
    if match := _VERSION_URI.match(uri):
        try:
            return client().get_model_version(match["name"], match["version"])
        except MlflowException as exc:
            raise MlcycleError(f"model {uri} does not exist in the registry") from exc
    return None


def load_pyfunc(uri: str):
    """Load any logged model by URI, with one clear message when it cannot be.

    MLflow's own check of the model's requirements against what is installed maps every
    installed module to its package first (measured: 0.6-2.2 s on this project's
    environment, more than loading a forest); the same warning is given here from the
    packages' own metadata (`requirement_mismatches`)."""
    resolve_version(uri)
    try:
        local = mlflow.artifacts.download_artifacts(uri)
        mismatches = requirement_mismatches(Path(local))
        if mismatches:
            log.warning(
                "model %s was logged with other packages than installed here: %s",
                uri,
                "; ".join(mismatches),
            )
        return mlflow.pyfunc.load_model(local, suppress_warnings=True)
    except MlflowException as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {exc.message}") from exc
    except OSError as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {exc}") from exc


def requirement_mismatches(model_dir: Path) -> list[str]:
    """The model's exact pins (`name==version` lines of its requirements.txt, as mlcycle
    logs them; other lines are not checked) that the installed packages do not match,
    and a Python of another minor version: one line each."""
    from importlib import metadata

    out = []
    path = model_dir / "requirements.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    for line in lines:
        pin = _PIN.match(line)
        if not pin:
            continue
        name, wanted = pin["name"], pin["version"]
        try:
            installed = mlflow.__version__ if name == "mlflow" else metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != wanted:
            out.append(f"{name} (installed: {installed or 'none'}, logged: {wanted})")
    logged = _logged_python(model_dir)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if logged and ".".join(logged.split(".")[:2]) != running:
        out.append(f"python (running: {running}, logged: {logged})")
    return out


def _logged_python(model_dir: Path) -> str | None:
    path = model_dir / "python_env.yaml"
    if not path.is_file():
        return None
    match = re.search(r"^python:\s*['\"]?([\d.]+)", path.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def set_alias(name: str, alias: str, version: str | int) -> None:
    client().set_registered_model_alias(name, alias, str(version))
    log.info("alias %s of %s -> version %s", alias, name, version)


def tag_version(name: str, version: str | int, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client().set_model_version_tag(name, str(version), key, str(value))


ETL_RUN_TAG = "mlcycle.etl_run"


@dataclass
class Champion:
    """A champion pinned to its version, loaded, with the etl run it learned from."""

    uri: str
    loaded: str
    version: str | None
    model: object
    etl_run: str | None


def load_champion(uri: str, model_name: str) -> Champion:
    """The champion pinned to its version (an alias could move while the batch is read)."""
    try:
        version = resolve_version(uri)
    except MlcycleError as exc:
        raise MlcycleError(
            f"{model_name} has no champion to estimate ({exc}): train one first, or pass champion"
        ) from exc
    loaded = f"models:/{version.name}/{version.version}" if version else uri
    model = load_pyfunc(loaded)
    etl_run = (version.tags or {}).get(ETL_RUN_TAG) if version else None
    if not etl_run:
        run_id = getattr(model.metadata, "run_id", None)
        try:
            etl_run = mlflow.get_run(run_id).data.tags.get(ETL_RUN_TAG) if run_id else None
        except MlflowException:
            etl_run = None
    return Champion(uri, loaded, str(version.version) if version else None, model, etl_run)
