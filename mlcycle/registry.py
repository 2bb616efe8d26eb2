"""The model registry: models are handed between steps by URI, promoted by alias."""

from __future__ import annotations

import logging
import re

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlcycle import remote
from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


class ModelNotFound(MlcycleError):
    """The URI names a registered model, version or alias that does not exist."""


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def alias_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def _absent(exc: MlflowException) -> bool:
    """What "no such model, version or alias" looks like (MLflow 3.17, SQL store, the same
    through a server): RESOURCE_DOES_NOT_EXIST for a model or version, but
    INVALID_PARAMETER_VALUE "Registered model alias X not found." for an alias, the code a
    malformed alias name gets too, hence the words. A 403 is not absence: the server
    refused this user, and reading it as "no champion" would train a new one over it."""
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc.message)


def cause(exc: BaseException) -> str:
    """One line saying why a registry call failed: the server went away, or its error."""
    message = remote.unreachable_message(exc, mlflow.get_registry_uri())
    if message:
        return message
    text = str(getattr(exc, "message", exc)).strip().splitlines()
    text = text[0][:300] if text else type(exc).__name__
    code = getattr(exc, "error_code", None)
    if code and code != "INTERNAL_ERROR" and not text.startswith(code):
        text = f"{code}: {text}"
    return text


def _unreadable(uri: str, exc: MlflowException) -> MlcycleError:
    return MlcycleError(
        f"cannot read {uri} from the registry {mlflow.get_registry_uri()}: {cause(exc)}"
    )


def version_for_alias(name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None when the model or alias does not exist.

    Any other failure (refused, server unreachable) raises MlcycleError naming the URI."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise _unreadable(alias_uri(name, alias), exc) from exc


def resolve_version(uri: str) -> ModelVersion | None:
    """models:/NAME@alias or models:/NAME/VERSION -> the registered version; None otherwise.

    Raises ModelNotFound when the URI names a registry entry that does not exist, and
    MlcycleError when the registry cannot say (refused, unreachable)."""
    if match := _ALIAS_URI.match(uri):
        version = version_for_alias(match["name"], match["alias"])
        if version is None:
            raise ModelNotFound(f"model {uri} does not exist in the registry")
        return version
    if match := _VERSION_URI.match(uri):
        try:
            return client().get_model_version(match["name"], match["version"])
        except MlflowException as exc:
            if _absent(exc):
                raise ModelNotFound(f"model {uri} does not exist in the registry") from exc
            raise _unreadable(uri, exc) from exc
    return None


def load_pyfunc(uri: str):
    """Load any logged model by URI, with one clear message when it cannot be."""
    resolve_version(uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {cause(exc)}") from exc
    except OSError as exc:
        raise MlcycleError(f"model {uri} cannot be loaded: {exc}") from exc


def set_alias(name: str, alias: str, version: str | int) -> None:
    client().set_registered_model_alias(name, alias, str(version))
    log.info("alias %s of %s -> version %s", alias, name, version)


def delete_alias(name: str, alias: str) -> None:
    client().delete_registered_model_alias(name, alias)
    log.info("alias %s of %s removed", alias, name)


def tag_version(name: str, version: str | int, tags: dict[str, str]) -> None:
    try:
        for key, value in tags.items():
            client().set_model_version_tag(name, str(version), key, str(value))
    except MlflowException as exc:
        raise MlcycleError(f"cannot tag models:/{name}/{version}: {cause(exc)}") from exc
