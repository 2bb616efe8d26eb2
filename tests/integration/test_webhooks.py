"""MLflow's own registry webhooks for alias moves, as `make team-server` sets them up
(`python -m mlcycle.scaleout.remote webhook`), on a real `mlflow server` that posts to a real
receiver on loopback when an alias is set or deleted."""

import os
import subprocess
import sys
import time

import mlflow
import pytest

from mlcycle.scaleout import remote
from tests.alert_receiver import Receiver
from tests.conftest import BIN, ROOT, step_env
from tests.integration.test_clients import free_port, stop, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = dict(
        os.environ,
        # A receiver on loopback: MLflow allows only https to public addresses by default.
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--default-artifact-root",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health", proc)
        yield url
    finally:
        stop(proc)


def _wait_for(receiver: Receiver, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_server_posts_every_alias_move_to_the_webhook_set_up_once(server):
    with Receiver() as receiver:
        made = subprocess.run(
            [sys.executable, "-m", "mlcycle.scaleout.remote", "webhook", server, receiver.url],
            cwd=ROOT,
            env=step_env(server),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        assert "created: model_version_alias.created, model_version_alias.deleted" in made.stdout
        # Again: the same webhook is kept, not doubled.
        assert remote.ensure_alias_webhook(server, receiver.url)[1] is False

        client = mlflow.MlflowClient(tracking_uri=server, registry_uri=server)
        client.create_registered_model("hooked")
        client.create_model_version("hooked", "s3://nowhere/model")  # never read
        client.set_registered_model_alias("hooked", "champion", "1")
        client.delete_registered_model_alias("hooked", "champion")
        _wait_for(receiver, 2)
    bodies = [r["body"] for r in receiver.received]
    assert [(b["entity"], b["action"]) for b in bodies] == [
        ("model_version_alias", "created"),
        ("model_version_alias", "deleted"),
    ]
    assert bodies[0]["data"]["name"] == "hooked" and bodies[0]["data"]["alias"] == "champion"
    assert bodies[0]["data"]["version"] == "1"
