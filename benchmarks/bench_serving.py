"""Served vs in-process latency of both model families, and throughput under load.

Prints, for the forest and the network: in-process `pyfunc.predict` 1-row p50/p99, the
same through `mlflow models serve` over loopback HTTP (target: served p50 <= in-process
p50 + 3 ms), then requests per second at concurrency 8 with the error count. Served
latency is timed with two clients on a kept-alive connection: the standard library's
http.client, and requests, which costs ~1 ms a call of its own on this machine. Also cold
and warm creation of the `--env-manager uv` environment (`--uv`, slow: ~minutes).

    .venv/bin/python benchmarks/bench_serving.py [--requests 300] [--uv]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_models(store: str) -> dict[str, str]:
    """A forest and a network trained on the bundled data, logged as mlcycle logs them."""
    import mlflow

    from mlcycle.families import nn, rf
    from mlcycle.network import NetworkParams
    from mlcycle.steps.etl import EtlParams, prepare

    mlflow.set_tracking_uri(store)
    result = prepare(EtlParams())
    schema, train = result.schema, result.splits.current_train
    with mlflow.start_run():
        forest = rf.fit(schema, rf.ForestParams(), train)
        rf_info = rf.log(forest, schema, train, "bench-forest")
        network = nn.fit(schema, NetworkParams(epochs=5), train)
        nn_info = nn.log(network, schema, train, "bench-network")
    rows = result.splits.current_test[schema.features]
    rows.head(1).to_json(
        Path(store.removeprefix("sqlite:///")).parent / "row.json", orient="records"
    )
    return {
        "forest": f"models:/bench-forest/{rf_info.registered_model_version}",
        "network": f"models:/bench-network/{nn_info.registered_model_version}",
    }


def in_process(model_uri: str, row, n: int) -> list[float]:
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    model.predict(row)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        model.predict(row)
        times.append((time.perf_counter() - start) * 1000)
    return times


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served(
    model_uri: str, store: str, body: str, n: int
) -> tuple[dict[str, list[float]], float, int]:
    import requests

    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PATH=f"{BIN}:{os.environ['PATH']}")
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ping", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        session = requests.Session()
        headers = {"Content-Type": "application/json"}
        for _ in range(20):  # warm-up
            session.post(f"{url}/invocations", data=body, headers=headers).raise_for_status()
        lean = http.client.HTTPConnection("127.0.0.1", port)

        def post_lean() -> None:
            lean.request("POST", "/invocations", body=body, headers=headers)
            response = lean.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"invocations answered {response.status}")

        def post_requests() -> None:
            session.post(f"{url}/invocations", data=body, headers=headers).raise_for_status()

        times = {}
        for client, post in (("http.client", post_lean), ("requests", post_requests)):
            times[client] = []
            for _ in range(n):
                start = time.perf_counter()
                post()
                times[client].append((time.perf_counter() - start) * 1000)
        lean.close()

        def worker(count: int) -> int:
            errors = 0
            with requests.Session() as s:
                for _ in range(count):
                    if s.post(f"{url}/invocations", data=body, headers=headers).status_code != 200:
                        errors += 1
            return errors

        per_worker = max(1, n // 8)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            errors = sum(pool.map(worker, [per_worker] * 8))
        rps = 8 * per_worker / (time.perf_counter() - start)
        return times, rps, errors
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def uv_env_creation() -> tuple[float, float]:
    """Seconds for `mlflow run . -e etl --env-manager uv` with no env, then with it."""
    envs = Path.home() / ".mlflow" / "envs"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
            PATH=f"{BIN}:{os.environ['PATH']}",
        )
        for path in envs.glob("mlflow-*"):
            shutil.rmtree(path)
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(
                [str(BIN / "mlflow"), "run", ".", "-e", "etl", "--env-manager", "uv"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            timings.append(time.perf_counter() - start)
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--uv", action="store_true", help="also time uv env creation")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pandas as pd

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        models = build_models(store)
        body_rows = Path(tmp, "row.json").read_text()
        row = pd.read_json(Path(tmp, "row.json"), orient="records")
        body = '{"dataframe_records": ' + body_rows + "}"
        for family, uri in models.items():
            local = in_process(uri, row, args.requests)
            remote, rps, errors = served(uri, store, body, args.requests)
            p50_in = statistics.median(local)
            print(
                f"{family:8s} in-process p50 {p50_in:6.2f} ms"
                f"  p99 {percentile(local, 0.99):6.2f} ms"
                f" | concurrency 8 (requests): {rps:6.1f} req/s, {errors} errors"
            )
            for client, timed in remote.items():
                p50_http = statistics.median(timed)
                print(
                    f"{'':8s} served via {client:11s} p50 {p50_http:6.2f} ms"
                    f"  p99 {percentile(timed, 0.99):6.2f} ms"
                    f" | overhead p50 {p50_http - p50_in:+.2f} ms (target <= +3)"
                )
    if args.uv:
        cold, warm = uv_env_creation()
        print(
            f"uv env: cold {cold:.1f} s (env removed, uv's package cache kept), warm {warm:.1f} s"
        )


if __name__ == "__main__":
    main()
