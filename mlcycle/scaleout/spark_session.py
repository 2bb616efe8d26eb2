"""A Spark session for one step: checked before it starts, quiet, and gone afterwards.

What can be found before Spark starts is refused with one line (`MlcycleError`): a master
that is not a Spark master URL, PySpark or Java missing, a standalone master whose port
does not answer. Spark's JVM writes its log (and Java's own warnings) to a file in a
temporary folder, with its scratch space and warehouse, so a user's mistake stays the one
`mlcycle error:` line on stderr and nothing lands in the project folder; the folder is
removed when the session ends. With `MLCYCLE_LOG_LEVEL=DEBUG` the JVM keeps stderr.

Spark's Python workers run `PYSPARK_PYTHON`; left unset, it is set to the interpreter
of this step, which is right for `local[*]` and for a cluster whose workers have the same
environment at the same path (docs/lifecycle.md, "A team's Spark cluster")."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
JAVA_HINT = (
    "install Java 17 (make system-deps; on Debian: apt-get install openjdk-17-jre-headless) "
    "or set JAVA_HOME"
)
# How long a standalone master's port may take to answer, and a cluster to give the job
# its first executor (a master with no free worker would otherwise wait forever).
CONNECT_SECONDS = 5.0
EXECUTOR_SECONDS = float(os.environ.get("MLCYCLE_SPARK_EXECUTOR_WAIT", "90"))

_MASTER = re.compile(
    r"local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?"
    r"|spark://[^\s/:,]+:\d{1,5}(,[^\s/:,]+:\d{1,5})*"
    r"|yarn"
    r"|k8s://\S+"
)
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")
_QUIET_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
"""


def check_master(master: str) -> str:
    """One line for a value Spark could not take as a master URL."""
    if not _MASTER.fullmatch(master):
        raise MlcycleError(
            f"parameter spark_master must be local[*], local[N], spark://HOST:PORT, yarn or "
            f"k8s://URL, got {master!r}"
        )
    return master


def standalone_hosts(master: str) -> list[tuple[str, int]]:
    """(host, port) of each master of a spark:// URL (several for a standby setup)."""
    if not master.startswith("spark://"):
        return []
    pairs = [part.rsplit(":", 1) for part in master.removeprefix("spark://").split(",")]
    return [(host, int(port)) for host, port in pairs]


def is_loopback(master: str) -> bool:
    hosts = standalone_hosts(master)
    return (
        master.startswith("local")
        or bool(hosts)
        and all(host.startswith(_LOOPBACK) for host, _ in hosts)
    )


def require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MlcycleError(
            "engine spark needs PySpark: install the project's dependencies (make venv, "
            "or pip install pyspark==4.3.0)"
        ) from exc


def java_command() -> str:
    """The java Spark will start: JAVA_HOME's, else the one on PATH; at least Java 17."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise MlcycleError(f"engine spark needs Java 17 or later ({where}): {JAVA_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match[1]) if match else 0
    major = int(match[2]) if major == 1 and match and match[2] else major  # "1.8" is Java 8
    if major < 17:
        raise MlcycleError(f"engine spark needs Java 17 or later, {java} is {major}: {JAVA_HINT}")
    return java


def probe_master(master: str, timeout: float = CONNECT_SECONDS) -> None:
    """A standalone master whose port does not answer is named at once, rather than after
    Spark's own minute of retries."""
    hosts = standalone_hosts(master)
    errors = []
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
    if hosts:
        raise MlcycleError(
            f"parameter spark_master {master}: no Spark master answers within "
            f"{timeout:g} s ({'; '.join(errors)})"
        )


def python_for_workers() -> str:
    """PYSPARK_PYTHON as the team set it, else this step's own interpreter."""
    python = os.environ.get("PYSPARK_PYTHON")
    if not python:
        python = sys.executable
        os.environ["PYSPARK_PYTHON"] = python
    return python


class _ChosenEnvManager(logging.Filter):
    """MLflow warns on every spark_udf with env_manager=local, a choice made on purpose
    here (the workers' environment is PYSPARK_PYTHON's): not a line for the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'env_manager="local"' not in record.getMessage()


def quiet_python_loggers() -> None:
    logging.getLogger("py4j").setLevel(logging.WARNING)
    pyfunc = logging.getLogger("mlflow.pyfunc")
    if not any(isinstance(f, _ChosenEnvManager) for f in pyfunc.filters):
        pyfunc.addFilter(_ChosenEnvManager())


def _conf(master: str, scratch: Path):
    from pyspark import SparkConf

    log4j = scratch / "log4j2.properties"
    log4j.write_text(_QUIET_LOG4J)
    java_options = f"-Dlog4j2.configurationFile={log4j.as_uri()} -Djava.io.tmpdir={scratch}"
    conf = (
        SparkConf()
        .setMaster(master)
        .setAppName("mlcycle-score")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.local.dir", str(scratch / "local"))
        .set("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .set("spark.driver.extraJavaOptions", java_options)
        .set("spark.sql.session.timeZone", "UTC")
    )
    if is_loopback(master):
        # A cluster on this machine: keep the driver on loopback too, where its workers are.
        conf.set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
    return conf


def _wait_for_executors(spark, master: str, seconds: float) -> None:
    """A cluster's job needs one executor: refuse after `seconds` instead of waiting."""
    if master.startswith("local"):
        return
    tracker = spark.sparkContext._jsc.sc()
    deadline = time.monotonic() + seconds
    while tracker.getExecutorMemoryStatus().size() < 2:  # the driver counts as one
        if tracker.isStopped() or time.monotonic() > deadline:
            raise MlcycleError(
                f"parameter spark_master {master}: no executor started within {seconds:g} s "
                "(is a worker with free cores and memory registered with the master?)"
            )
        time.sleep(0.5)


def preflight(master: str) -> None:
    """Everything that can be refused before a model loads or Spark starts."""
    check_master(master)
    require_pyspark()
    java_command()
    probe_master(master)


@contextlib.contextmanager
def session(master: str, executor_seconds: float = EXECUTOR_SECONDS) -> Iterator:
    """A SparkSession on master, after the checks above; stopped and its folder removed
    on the way out, whatever happened."""
    preflight(master)
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    quiet_python_loggers()
    log.info("Spark workers run %s", python_for_workers())
    scratch = Path(tempfile.mkdtemp(prefix="mlcycle-spark-"))
    spark_log = open(scratch / "spark.log", "wb")  # noqa: SIM115 - closed below
    context = None
    try:
        conf = _conf(master, scratch)
        keep_stderr = os.environ.get("MLCYCLE_LOG_LEVEL", "").upper() == "DEBUG"
        quiet = {} if keep_stderr else {"stdout": spark_log, "stderr": spark_log}
        started = time.perf_counter()
        gateway = launch_gateway(conf, popen_kwargs=quiet)
        context = SparkContext(conf=conf, gateway=gateway)
        spark = SparkSession(context)
        _wait_for_executors(spark, master, executor_seconds)
        log.info("Spark %s on %s in %.1f s", spark.version, master, time.perf_counter() - started)
        yield spark
    finally:
        if context is not None:
            context.stop()
            gateway = context._gateway
            with contextlib.suppress(Exception):
                gateway.shutdown()
            proc = getattr(gateway, "proc", None)
            if proc is not None:  # the JVM leaves when its stdin closes
                with contextlib.suppress(Exception):
                    proc.stdin.close()
                    proc.wait(timeout=30)
            # pyspark keeps the gateway for the next SparkContext of this process: the JVM
            # just stopped, so the next session must start its own.
            SparkContext._gateway = SparkContext._jvm = None
        spark_log.close()
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------ errors


@contextlib.contextmanager
def spark_errors(path: Path) -> Iterator[None]:
    """A failed Spark job as one line: a missing input said so, a model's own error by
    its last line. (Text in a number column is refused before the job, by `prepare`.)"""
    try:
        yield
    except Exception as exc:
        # Spark's own (pyspark.errors) or its JVM bridge's (py4j) errors; ours pass through.
        if not type(exc).__module__.startswith(("pyspark", "py4j")):
            raise
        text = str(exc)
        if "PATH_NOT_FOUND" in text:
            raise MlcycleError(f"input file not found: {path}") from None
        raise MlcycleError(f"Spark could not score {path}: {_one_line(text)}") from None


def _one_line(text: str) -> str:
    """The last 'SomeError: message' line of a Python worker's traceback, else the first
    line of Spark's message, shortened."""
    found = re.findall(r"^(?:\w+\.)*\w*(?:Error|Exception): .+$", text, flags=re.M)
    line = found[-1] if found else text.strip().splitlines()[0] if text.strip() else "failed"
    return line if len(line) <= 400 else line[:397] + "..."
