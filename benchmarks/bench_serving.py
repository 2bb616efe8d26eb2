"""Served vs in-process latency of both model families, and throughput under load.

Prints, for the forest (as mlcycle logs it: compiled), the same fitted forest logged with
MLflow's stock sklearn flavour, and the network: in-process `pyfunc.predict` 1-row
p50/p99, the same through `mlflow models serve` over loopback HTTP (target: served p50 <=
in-process p50 + 3 ms), then requests per second at concurrency 8 with the error count.
Served latency is timed with two clients on a kept-alive connection: the standard
library's http.client, and requests, which costs ~1 ms a call of its own on this machine.

Then the forest's targets, as ratios measured within one run, the two sides interleaved
call by call (the machine is shared): in-process 1-row p50 of the forest pyfunc vs
scikit-learn's `Pipeline.predict` on the same fitted forest and row (<= 1/5); served
1-row p50 of the forest vs the stock sklearn flavour, both servers up, same client
(<= 1/2); 100k-row batch predict vs the Pipeline's (at least as fast). Also cold and warm
creation of the `--env-manager uv` environment (`--uv`, slow: ~minutes). With `--blend`,
only the blend of a forest, boosted trees and a network: its 1-row p50 against the sum of
its members' (target: <= the sum + 0.5 ms), and served.

Loading (`--load N`, N fresh processes a way, alternated): seconds of `import mlflow.pyfunc`
and then of `mlflow.pyfunc.load_model` of the forest (target: load <= 1.5 s), by registry
URI and from the downloaded folder, of the stock sklearn flavour, and of
`mlcycle.lifecycle.registry.load_pyfunc` (what the steps call). Tree walks (`--walks`):
ms per batch of the compiled trees (Treelite's GTIL, 1 and 2 threads) against
scikit-learn's walk of the same trees (n_jobs 1 and -1), batch sizes 1 to 50,000: where
the forest hands batches to scikit-learn (SMALL_BATCH) and on how many threads.

    .venv/bin/python benchmarks/bench_serving.py [--requests 300] [--batch-repeats 5] [--uv]
    .venv/bin/python benchmarks/bench_serving.py --only-load-and-walks --load 5 --walks
    .venv/bin/python benchmarks/bench_serving.py --blend
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


def build_models(store: str):
    """A forest and a network trained on the bundled data, logged as mlcycle logs them,
    and the same fitted forest logged with MLflow's stock sklearn flavour (as earlier
    versions logged it). Returns the model URIs, the fitted Pipeline and raw test rows."""
    import mlflow

    from mlcycle.models.families import nn, rf
    from mlcycle.models.modelio import log_sklearn
    from mlcycle.models.network import NetworkParams
    from mlcycle.steps.etl import EtlParams, prepare

    mlflow.set_tracking_uri(store)
    result = prepare(EtlParams())
    schema, train = result.schema, result.splits.current_train
    with mlflow.start_run():
        forest = rf.fit(schema, rf.ForestParams(), train)
        rf_info = rf.log(forest, schema, train, "bench-forest")
        stock_info = log_sklearn(forest, schema, train, "bench-forest-sklearn")
        network = nn.fit(schema, NetworkParams(epochs=5), train)
        nn_info = nn.log(network, schema, train, "bench-network")
    rows = result.splits.current_test[schema.features]
    rows.head(1).to_json(
        Path(store.removeprefix("sqlite:///")).parent / "row.json", orient="records"
    )
    uris = {
        "forest": f"models:/bench-forest/{rf_info.registered_model_version}",
        "forest-sklearn": f"models:/bench-forest-sklearn/{stock_info.registered_model_version}",
        "network": f"models:/bench-network/{nn_info.registered_model_version}",
    }
    return uris, forest, rows


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


def start_server(model_uri: str, store: str) -> tuple[subprocess.Popen, int]:
    """`mlflow models serve --env-manager local` on a free loopback port, answering /ping."""
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
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).ok:
                return proc, port
        except requests.ConnectionError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"{model_uri} was not served within 180 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def served(
    model_uri: str, store: str, body: str, n: int
) -> tuple[dict[str, list[float]], float, int]:
    import requests

    proc, port = start_server(model_uri, store)
    url = f"http://127.0.0.1:{port}"
    try:
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
        stop_server(proc)


def interleaved(calls: dict, n: int) -> dict[str, list[float]]:
    """ms per call of each callable, called in turn n times each (after one warm-up), so
    a noisy moment on the shared machine falls on both sides alike."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def spread(times: list[float]) -> str:
    return (
        f"p50 {statistics.median(times):8.3f} ms"
        f"  (p10 {percentile(times, 0.10):.3f}, p90 {percentile(times, 0.90):.3f})"
    )


def poster(port: int, body: str):
    """A POST of body on one kept-alive http.client connection: the lean client."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def post() -> None:
        conn.request("POST", "/invocations", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"invocations answered {response.status}")

    return post


def forest_targets(uris: dict, store: str, pipeline, rows, body: str, n: int, repeats: int):
    """The forest's three targets, each side measured in turn within one loop."""
    import mlflow
    import numpy as np
    import pandas as pd

    from mlcycle.models.served_forest import forest_of

    row = rows.head(1)
    compiled = mlflow.pyfunc.load_model(uris["forest"])
    print(f"forest engine: {forest_of(compiled).engine}")
    t = interleaved(
        {"pipeline": lambda: pipeline.predict(row), "pyfunc": lambda: compiled.predict(row)}, n
    )
    print(f"in-process 1 row, sklearn Pipeline.predict     {spread(t['pipeline'])}")
    print(f"in-process 1 row, forest pyfunc.predict        {spread(t['pyfunc'])}")
    print(f"  ratio pyfunc / Pipeline: {paired(t, 'pyfunc', 'pipeline')} (target <= 0.2)")

    servers = {name: start_server(uris[name], store) for name in ("forest", "forest-sklearn")}
    try:
        posts = {name: poster(port, body) for name, (_, port) in servers.items()}
        for post in posts.values():
            for _ in range(20):  # warm-up
                post()
        t = interleaved(posts, n)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    print(f"served 1 row (http.client), stock sklearn flavour {spread(t['forest-sklearn'])}")
    print(f"served 1 row (http.client), forest pyfunc         {spread(t['forest'])}")
    print(
        f"  ratio forest / stock sklearn: {paired(t, 'forest', 'forest-sklearn')} (target <= 0.5)"
    )

    # The batch: bare models and logged models compared like for like. Both logged
    # forests pay MLflow's schema check, which looks at every value of the `Any`-typed
    # number columns (~0.4 s per 100k rows here) before the model sees them.
    stock = mlflow.pyfunc.load_model(uris["forest-sklearn"])
    rng = np.random.default_rng(0)
    big = rows.iloc[rng.integers(0, len(rows), 100_000)].reset_index(drop=True)
    big.loc[rng.random(len(big)) < 0.05, big.columns[0]] = np.nan  # holes, as in real data
    sides = {
        "sklearn Pipeline.predict": pipeline.predict,
        "ForestModel.predict": forest_of(compiled).predict,
        "stock sklearn pyfunc.predict": stock.predict,
        "forest pyfunc.predict": compiled.predict,
    }
    answers = {name: np.asarray(predict(big), dtype="float64") for name, predict in sides.items()}
    reference = answers["sklearn Pipeline.predict"]
    worst = max(float(np.max(np.abs(a - reference) / reference)) for a in answers.values())
    t = interleaved({name: (lambda p=predict: p(big)) for name, predict in sides.items()}, repeats)
    for name, times in t.items():
        runs = pd.Series(times) / 1000
        print(
            f"100k rows, {name:28s} median {runs.median():6.3f} s"
            f"  (min {runs.min():.3f}, max {runs.max():.3f}, {repeats} runs)"
        )

    bare = paired(t, "ForestModel.predict", "sklearn Pipeline.predict")
    logged = paired(t, "forest pyfunc.predict", "stock sklearn pyfunc.predict")
    print(f"  ratio ForestModel / Pipeline: {bare} (target <= 1)")
    print(f"  ratio forest pyfunc / stock sklearn pyfunc: {logged} (target <= 1)")
    print(f"  largest relative difference from the Pipeline's answers {worst:.1e}")


LOAD = """
import sys, time
started = time.perf_counter()
import mlflow.pyfunc
imported = time.perf_counter()
if sys.argv[2] == "registry":
    from mlcycle.lifecycle.registry import load_pyfunc
    model = load_pyfunc(sys.argv[1])
else:
    model = mlflow.pyfunc.load_model(sys.argv[1])
loaded = time.perf_counter()
print(imported - started, loaded - imported)
"""


def load_times(uris: dict, store: str, runs: int) -> None:
    """Fresh processes, alternated: `import mlflow.pyfunc`, then the load (seconds)."""
    import mlflow

    mlflow.set_tracking_uri(store)
    folder = Path(store.removeprefix("sqlite:///")).parent / "forest-model"
    mlflow.artifacts.download_artifacts(uris["forest"], dst_path=str(folder))
    sides = {
        "forest, load_model(models:/NAME/V)": (uris["forest"], "pyfunc"),
        "forest, load_model(folder)": (str(folder), "pyfunc"),
        "forest, registry.load_pyfunc (steps)": (uris["forest"], "registry"),
        "stock sklearn flavour, load_model": (uris["forest-sklearn"], "pyfunc"),
    }
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONPATH=str(ROOT))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, (uri, how) in sides.items():
            out = subprocess.run(
                [sys.executable, "-c", LOAD, uri, how],
                cwd=ROOT, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            imported, loaded = map(float, out.stdout.split()[-2:])
            times[name].append((imported, loaded))
    for name, pairs in times.items():
        imports = statistics.median(p[0] for p in pairs)
        loads = sorted(p[1] for p in pairs)
        print(
            f"load {name:40s} median {statistics.median(loads):5.2f} s (min {loads[0]:.2f}, "
            f"max {loads[-1]:.2f}) beyond import mlflow.pyfunc ({imports:.2f} s); {runs} runs"
        )


def tree_walks(uri: str, store: str, rows) -> None:
    """ms per batch: Treelite's GTIL (1, 2 threads) and scikit-learn (n_jobs 1, -1)."""
    import copy

    import mlflow
    import numpy as np
    import treelite

    from mlcycle.models.served_forest import forest_of

    mlflow.set_tracking_uri(store)
    forest = forest_of(mlflow.pyfunc.load_model(uri))
    one = forest.estimator
    every = copy.copy(one)
    every.n_jobs = -1
    trees = forest.compiled.trees
    rng = np.random.default_rng(0)
    print("rows      | GTIL 1 thread | GTIL 2 threads | sklearn 1 thread | sklearn all cores (ms)")
    for n in (1, 16, 64, 128, 256, 512, 2000, 10_000, 50_000):
        x = forest._matrix(rows.iloc[rng.integers(0, len(rows), n)].reset_index(drop=True))
        x64 = x.astype("float64")
        sides = {
            "gtil1": lambda x64=x64: treelite.gtil.predict(trees, x64, nthread=1),
            "gtil2": lambda x64=x64: treelite.gtil.predict(trees, x64, nthread=2),
            "sk1": lambda x=x: one.predict(x),
            "skN": lambda x=x: every.predict(x),
        }
        t = interleaved(sides, 3 if n >= 10_000 else 20)
        best = {k: min(v) for k, v in t.items()}
        print(
            f"{n:>9,d} | {best['gtil1']:13.2f} | {best['gtil2']:14.2f} | {best['sk1']:16.2f} |"
            f" {best['skN']:8.2f}",
            flush=True,
        )


def paired(times: dict[str, list[float]], a: str, b: str) -> str:
    """a / b call by call (each pair measured back to back, so a slow moment of the
    shared machine weighs on both): the median ratio, its p10-p90, and the ratio of the
    medians."""
    ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
    of_medians = statistics.median(times[a]) / statistics.median(times[b])
    return (
        f"median {statistics.median(ratios):.3f} (p10 {percentile(ratios, 0.10):.3f},"
        f" p90 {percentile(ratios, 0.90):.3f}); of the medians {of_medians:.3f}"
    )


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


def blend_targets(store: str, n: int) -> None:
    """The blend of a forest, boosted trees and a network (one third each), logged as the
    blend step logs it: its 1-row in-process p50 against its members' (each pyfunc timed
    in turn, call by call; target: <= their sum + 0.5 ms), then served."""
    import mlflow

    from mlcycle.models.families import hgb, nn, rf
    from mlcycle.models.network import NetworkParams
    from mlcycle.models.served_blend import BlendModel, log_blend, member_of, requirements
    from mlcycle.steps.etl import EtlParams, prepare

    mlflow.set_tracking_uri(store)
    result = prepare(EtlParams())
    schema, train = result.schema, result.splits.current_train
    row = result.splits.current_test[schema.features].head(1)
    body = '{"dataframe_records": ' + row.to_json(orient="records") + "}"
    fitted = {
        "forest": (rf, rf.fit(schema, rf.ForestParams(), train)),
        "hgb": (hgb, hgb.fit(schema, hgb.BoostingParams(), train)),
        "network": (nn, nn.fit(schema, NetworkParams(epochs=5), train)),
    }
    with mlflow.start_run():
        uris = {}
        for name, (family, model) in fitted.items():
            version = family.log(model, schema, train, f"blend-{name}").registered_model_version
            uris[name] = f"models:/blend-{name}/{version}"
        members = {k: mlflow.pyfunc.load_model(u) for k, u in uris.items()}
        blend = BlendModel(schema, [member_of(m) for m in members.values()], [1 / 3] * 3)
        needs = [mlflow.pyfunc.get_model_dependencies(u) for u in uris.values()]
        info = log_blend(blend, schema, train, "blend", requirements(needs))
    uris["blend"] = f"models:/blend/{info.registered_model_version}"
    calls = {k: (lambda m=m: m.predict(row)) for k, m in members.items()}
    loaded = mlflow.pyfunc.load_model(uris["blend"])
    t = interleaved(calls | {"blend": lambda: loaded.predict(row)}, n)
    for name, times in t.items():
        print(f"in-process 1 row, {name:8s} pyfunc.predict  {spread(times)}")
    total = sum(statistics.median(t[k]) for k in members)
    p50 = statistics.median(t["blend"])
    print(
        f"  blend p50 {p50:.3f} ms vs its members' summed p50s {total:.3f} ms: "
        f"{p50 - total:+.3f} ms (target <= +0.5)"
    )
    # Round by round (the four calls back to back), so a slow moment weighs on both sides.
    rounds = [b - sum(t[k][i] for k in members) for i, b in enumerate(t["blend"])]
    print(
        f"  paired, blend - members' sum per round: median {statistics.median(rounds):+.3f} ms"
        f" (p10 {percentile(rounds, 0.10):+.3f}, p90 {percentile(rounds, 0.90):+.3f})"
    )
    remote, _, errors = served(uris["blend"], store, body, n)
    p50_http = statistics.median(remote["http.client"])
    print(f"served 1 row (http.client), blend p50 {p50_http:.2f} ms, {errors} errors")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--uv", action="store_true", help="also time uv env creation")
    parser.add_argument("--load", type=int, default=0, help="fresh-process loads of each kind")
    parser.add_argument("--walks", action="store_true", help="compiled vs sklearn tree walks")
    parser.add_argument(
        "--only-load-and-walks", action="store_true", help="skip the latency and batch sections"
    )
    parser.add_argument("--blend", action="store_true", help="only the blend's latency")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from importlib.metadata import version

    import pandas as pd

    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f};"
        f" python {sys.version.split()[0]}; mlflow {version('mlflow')},"
        f" scikit-learn {version('scikit-learn')}, treelite {version('treelite')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        if args.blend:
            return blend_targets(store, args.requests)
        models, pipeline, rows = build_models(store)
        body_rows = Path(tmp, "row.json").read_text()
        row = pd.read_json(Path(tmp, "row.json"), orient="records")
        body = '{"dataframe_records": ' + body_rows + "}"
        if args.load:
            load_times(models, store, args.load)
        if args.walks:
            tree_walks(models["forest"], store, rows)
        if args.only_load_and_walks:
            return
        for family, uri in models.items():
            local = in_process(uri, row, args.requests)
            remote, rps, errors = served(uri, store, body, args.requests)
            p50_in = statistics.median(local)
            print(
                f"{family:14s} in-process p50 {p50_in:6.2f} ms"
                f"  p99 {percentile(local, 0.99):6.2f} ms"
                f" | concurrency 8 (requests): {rps:6.1f} req/s, {errors} errors"
            )
            for client, timed in remote.items():
                p50_http = statistics.median(timed)
                print(
                    f"{'':14s} served via {client:11s} p50 {p50_http:6.2f} ms"
                    f"  p99 {percentile(timed, 0.99):6.2f} ms"
                    f" | overhead p50 {p50_http - p50_in:+.2f} ms (target <= +3)"
                )
        forest_targets(models, store, pipeline, rows, body, args.requests, args.batch_repeats)
    if args.uv:
        cold, warm = uv_env_creation()
        print(
            f"uv env: cold {cold:.1f} s (env removed, uv's package cache kept), warm {warm:.1f} s"
        )


if __name__ == "__main__":
    main()
