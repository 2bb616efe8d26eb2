"""`make test` hands its workers the longest files first (tests/conftest.py): the files
its table names exist, and the order keeps each file's tests together."""

from tests.conftest import FILE_SECONDS, ROOT, file_seconds


def test_every_timed_file_exists():
    missing = [path for path in FILE_SECONDS if not (ROOT / path).is_file()]
    assert not missing, f"FILE_SECONDS names files that are gone: {missing}"


def test_timed_files_then_integration_then_unit():
    assert file_seconds("tests/integration/test_replay.py") == max(FILE_SECONDS.values())
    assert file_seconds("tests/integration/test_new.py") > file_seconds("tests/unit/test_new.py")
    assert min(FILE_SECONDS.values()) > file_seconds("tests/integration/test_new.py")
