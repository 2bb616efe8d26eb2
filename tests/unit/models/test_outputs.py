"""The output place of score: checked by writing, claimed by a lock, never shared."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models import outputs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_place_where_no_file_can_be_created_is_refused_though_os_access_says_yes():
    with pytest.raises(MlcycleError, match=r"^parameter output: cannot write /proc/x.parquet: "):
        outputs.writable_ancestor(Path("/proc/x.parquet"))
    with (
        pytest.raises(MlcycleError, match="cannot write /proc/x.parquet"),
        outputs.claimed(Path("/proc/x.parquet")),
    ):
        pass


def test_a_file_as_the_folder_of_the_output_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(MlcycleError, match="is not a folder"):
        outputs.writable_ancestor(tmp_path / "f" / "p.parquet")


def test_the_check_leaves_nothing_behind(tmp_path):
    assert outputs.writable_ancestor(tmp_path / "a" / "p.parquet") == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_of_the_same_file_is_refused_in_one_line_naming_the_holder(tmp_path):
    path = tmp_path / "p.parquet"
    with outputs.claimed(path) as claimed:
        assert claimed == path
        assert (tmp_path / "p.parquet.lock").read_text().split() == [
            str(os.getpid()),
            socket.gethostname(),
        ]
        with pytest.raises(MlcycleError) as error, outputs.claimed(path):
            pass
        assert "\n" not in str(error.value)
        assert f"{path} is being written by another run (pid {os.getpid()}" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # the lock is gone with the run


def test_a_second_writer_of_a_timestamped_name_gets_its_own_file(tmp_path):
    first = outputs.stamped_file(tmp_path)
    with outputs.claimed(first, renamable=True), outputs.claimed(first, renamable=True) as other:
        assert other != first and other.parent == tmp_path
        assert outputs.stamped_file(tmp_path) not in (first, other)


def test_the_lock_of_a_process_that_ended_is_taken_over(tmp_path):
    path = tmp_path / "p.parquet"
    outputs.lock_path(path).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    with outputs.claimed(path) as claimed:
        assert claimed == path
        assert outputs.lock_path(path).read_text().split()[0] == str(os.getpid())


def test_a_lock_of_another_host_or_just_created_is_respected(tmp_path):
    path = tmp_path / "p.parquet"
    outputs.lock_path(path).write_text(f"{_dead_pid()} another-host\n")
    with pytest.raises(MlcycleError, match="another-host"), outputs.claimed(path):
        pass
    outputs.lock_path(path).write_text("")
    with pytest.raises(MlcycleError, match="being written"), outputs.claimed(path):
        pass


def test_folders_made_for_an_output_never_written_are_removed(tmp_path):
    path = tmp_path / "a" / "b" / "p.parquet"
    with outputs.claimed(path):
        assert path.parent.is_dir()
    assert list(tmp_path.iterdir()) == []
    with outputs.claimed(path):
        path.write_bytes(b"written")
    assert path.read_bytes() == b"written" and sorted(path.parent.iterdir()) == [path]


def test_a_timestamped_name_is_explicit_only_when_the_user_named_that_file(tmp_path):
    assert outputs.stamped("", tmp_path / "x.parquet")
    assert outputs.stamped("folder/", tmp_path / "folder" / "20260101T000000Z.parquet")
    assert not outputs.stamped("out/x.parquet", tmp_path / "out" / "x.parquet")
