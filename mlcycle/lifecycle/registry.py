"""The model registry: models are handed between steps by URI, promoted by alias."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


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
    """Load any logged model by URI, with one clear message when it cannot be."""
    resolve_version(uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {exc.message}") from exc
    except OSError as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {exc}") from exc


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
