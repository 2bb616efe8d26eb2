"""The team tracking server (an authenticated `mlflow server`): wait for it, add team
members, and turn "the server went away" into one clear line.

Used by scripts/team-server.sh (`python -m mlcycle.scaleout.remote wait|add-user`) and by the
steps' error handling (`unreachable_message`). Reads credentials from the environment
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), as MLflow's own client does."""

from __future__ import annotations

import os
import sys
import time

import click
import requests

# What the team grants a member: read and write every experiment and registered model
# (alias moves included), but not delete them or change others' permissions.
MEMBER_GRANTS = (("experiment", "*", "EDIT"), ("registered_model", "*", "EDIT"))
# The basic-auth app's REST API (mlflow.server.auth.routes).
CREATE_USER = "/api/2.0/mlflow/users/create"
GRANT_PERMISSION = "/api/3.0/mlflow/users/permissions/grant"
# Bounded retries for clients of a remote server: MLflow's default retries for minutes.
CLIENT_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# Words of the exceptions requests/urllib3 raise when nothing answers on the other end.
_UNREACHABLE = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish",
    "ConnectionError",
    "RemoteDisconnected",
    "Read timed out",
)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def unreachable_message(exc: BaseException, tracking_uri: str) -> str | None:
    """One line for a user when `exc` says the tracking server did not answer, else None.

    MLflow raises MlflowException("API request to ... failed with exception ...") once its
    retries are spent; the connection error only shows in the text or the chain."""
    if not is_remote(tracking_uri):
        return None
    seen, texts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    if not any(word in text for text in texts for word in _UNREACHABLE):
        return None
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7 (MLflow's default)")
    return (
        f"tracking server {tracking_uri} is unreachable (gave up after {retries} "
        "retries). Start it again and re-run: finished steps are reused, aliases "
        "were not moved by the failed step"
    )


def wait_until_up(url: str, timeout: float = 120.0, alive=lambda: True) -> None:
    """Poll the server's /health until it answers 200; alive() false means it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"tracking server at {url} exited during start-up")
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"tracking server at {url} did not answer /health within {timeout:.0f} s")


def add_member(url: str, username: str, password: str, admin: tuple[str, str]) -> bool:
    """Create a team member with the admin's credentials; True if new.

    Plain REST calls (the basic-auth app's API), so no mlflow import: seconds matter in
    start-up scripts. An existing user keeps their password; grants are idempotent."""

    def post(path: str, payload: dict) -> requests.Response:
        return requests.post(f"{url}{path}", json=payload, auth=admin, timeout=60)

    response = post(CREATE_USER, {"username": username, "password": password})
    created = response.status_code == 200
    if not created and "RESOURCE_ALREADY_EXISTS" not in response.text:
        response.raise_for_status()
    for resource_type, pattern, permission in MEMBER_GRANTS:
        response = post(
            GRANT_PERMISSION,
            {
                "username": username,
                "resource_type": resource_type,
                "resource_id": pattern,
                "permission": permission,
            },
        )
        if response.status_code != 200 and "RESOURCE_ALREADY_EXISTS" not in response.text:
            response.raise_for_status()
    return created


# MLflow's own registry webhooks (MLflow >= 3.3): the server itself POSTs when an alias
# is set (a promotion, a rollback, a nomination: MLflow has no "moved", setting an alias
# that pointed elsewhere is `created`) or deleted, whoever moved it, mlcycle or not.
ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
WEBHOOK_NAME = "mlcycle-alias-moves"


def ensure_alias_webhook(tracking_uri: str, hook_url: str, secret: str = "") -> tuple[str, bool]:
    """The server's webhook for alias moves to hook_url, created once: (id, created).

    An existing webhook of that name and URL is kept as it is, so `make team-server`
    can run again. The server must allow the URL: https only, to a public address,
    unless it runs with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and
    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true (a receiver on loopback or the LAN)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    for hook in client.list_webhooks(max_results=1000):
        if hook.name == WEBHOOK_NAME and hook.url == hook_url:
            return hook.webhook_id, False
    hook = client.create_webhook(
        name=WEBHOOK_NAME,
        url=hook_url,
        events=list(ALIAS_EVENTS),
        description="mlcycle: an alias of a registered model was set or deleted",
        secret=secret or None,
    )
    return hook.webhook_id, True


@click.group()
def cli():
    """Helpers of scripts/team-server.sh."""


@cli.command()
@click.argument("url")
@click.option("--timeout", type=float, default=120.0)
@click.option("--pid", type=int, default=0, help="server process id: fail fast if it exits")
def wait(url, timeout, pid):
    """Wait until the tracking server at URL answers."""

    def alive() -> bool:
        if not pid:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        wait_until_up(url, timeout, alive)
    except RuntimeError as exc:
        click.echo(f"team-server: {exc}", err=True)
        sys.exit(1)


@cli.command("add-user")
@click.argument("url")
@click.argument("username")
def add_user(url, username):
    """Add USERNAME (password from MLCYCLE_NEW_USER_PASSWORD) as a team member, with the
    admin's credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    password = os.environ.get("MLCYCLE_NEW_USER_PASSWORD", "")
    if not password:
        click.echo(
            "team-server: set MLCYCLE_NEW_USER_PASSWORD to the new user's password", err=True
        )
        sys.exit(2)
    admin = (
        os.environ.get("MLFLOW_TRACKING_USERNAME", ""),
        os.environ.get("MLFLOW_TRACKING_PASSWORD", ""),
    )
    created = add_member(url, username, password, admin)
    click.echo(
        f"team member {username}: {'created' if created else 'exists'}, "
        + ", ".join(f"{p} on {t} {r}" for t, r, p in MEMBER_GRANTS)
    )


@cli.command()
@click.argument("url")
@click.argument("hook_url")
def webhook(url, hook_url):
    """Make the server at URL POST to HOOK_URL on every alias move (MLflow's registry
    webhooks; signed with MLCYCLE_WEBHOOK_SECRET when set), with the credentials of
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    try:
        hook_id, created = ensure_alias_webhook(
            url, hook_url, os.environ.get("MLCYCLE_WEBHOOK_SECRET", "")
        )
    except Exception as exc:  # noqa: BLE001 - one line for the script, whatever refused it
        click.echo(f"team-server: webhook to {hook_url} not set up: {exc}", err=True)
        sys.exit(1)
    state = "created" if created else "exists"
    click.echo(f"webhook {WEBHOOK_NAME} ({hook_id}) {state}: {', '.join(ALIAS_EVENTS)}")


if __name__ == "__main__":
    cli()
