"""`cli.run_process`: an entry point's process ends without the interpreter's teardown,
and still does what a normal exit does that matters (its code, other threads, an idle
executor's workers, exit handlers, buffered output)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMMAND = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import click
from mlcycle.cli import run_process

folder = Path(sys.argv[1])
kept = []  # alive until the process ends, as a library's module-level executor

def late_write():
    time.sleep(0.5)
    (folder / "thread").write_text("done")

@click.command()
@click.option("--code", type=int)
def step(code):
    threading.Thread(target=late_write).start()
    # Never shut down, as MLflow's artifact uploads leave theirs: its idle worker is a
    # non-daemon thread that only the interpreter's exit callbacks stop.
    kept.append(ThreadPoolExecutor(max_workers=1))
    kept[0].submit(print, end="")
    atexit.register(lambda: (folder / "atexit").write_text("ran"))
    sys.stdout.write("no newline, still buffered")
    if code == 99:
        raise RuntimeError("a bug")
    sys.exit(code)

sys.argv = ["step", "--code", sys.argv[2]]
run_process(step)
print("never reached")
"""


@pytest.mark.parametrize("code", [0, 2, 3, 99])
def test_the_process_keeps_its_code_waits_for_threads_runs_exit_handlers_and_flushes(
    tmp_path, code
):
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, str(tmp_path), str(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "no newline, still buffered"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"
    if code == 99:  # a bug ends the process as usual: its traceback, exit code 1
        assert done.returncode == 1 and "RuntimeError: a bug" in done.stderr
    else:
        assert done.returncode == code
