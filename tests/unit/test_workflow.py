import subprocess

import pytest

from mlcycle import workflow
from mlcycle.workflow import Step, code_version, full_parameters, step_key


def test_parameters_are_compared_as_the_strings_mlflow_logs():
    # The MLflow example's cache missed here: 42 (int) never equalled '42' (logged).
    assert full_parameters("etl", {"seed": 42}) == full_parameters("etl", {"seed": "42"})
    assert full_parameters("etl", {})["test_size"] == "0.2"


def test_key_changes_with_parameters_code_and_data(tmp_path):
    data = tmp_path / "a.csv"
    data.write_text("x,y\n1,2\n")
    base = Step("etl", {"seed": 42}, data_files=[data])
    key = step_key(base, "code-1")
    assert step_key(Step("etl", {"seed": "42"}, data_files=[data]), "code-1") == key
    assert step_key(Step("etl", {"seed": 43}, data_files=[data]), "code-1") != key
    assert step_key(base, "code-2") != key
    data.write_text("x,y\n1,3\n")
    assert step_key(base, "code-1") != key


def test_key_holds_data_by_content_not_by_path(tmp_path):
    """Two checkouts (a git-URL run gets a fresh temporary one each time) with the same
    files give the same key; other content in the same place does not."""
    keys = []
    for checkout in ("one", "two"):
        folder = tmp_path / checkout / "data"
        folder.mkdir(parents=True)
        files = [folder / "old.csv", folder / "new.csv"]
        files[0].write_text("x,y\n1,2\n")
        files[1].write_text("x,y\n3,4\n")
        params = {"reference": str(files[0]), "current": str(files[1])}
        keys.append(step_key(Step("etl", params, data_files=files), "code-1"))
    assert keys[0] == keys[1]
    files[1].write_text("x,y\n3,5\n")
    assert step_key(Step("etl", params, data_files=files), "code-1") != keys[0]
    # The two files swapped: the same contents, other roles.
    swapped = {"reference": str(files[1]), "current": str(files[0])}
    files[1].write_text("x,y\n3,4\n")
    assert step_key(Step("etl", swapped, data_files=files), "code-1") != keys[0]


def test_key_follows_the_version_an_alias_resolves_to(monkeypatch):
    versions = {"models:/m@champion": "m/1"}
    monkeypatch.setattr(workflow, "resolved_models", lambda uris: {u: versions[u] for u in uris})
    step = Step("retrain", {"epochs": 2}, model_uris=["models:/m@champion"])
    before = step_key(step, "c")
    versions["models:/m@champion"] = "m/2"
    assert step_key(step, "c") != before


@pytest.fixture
def repo(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    return tmp_path


def test_code_version_is_commit_plus_uncommitted_changes(repo):
    clean = code_version(repo)
    assert len(clean) == 40 and "+" not in clean
    (repo / "a.py").write_text("x = 2\n")
    dirty = code_version(repo)
    assert dirty.startswith(clean + "+")
    (repo / "a.py").write_text("x = 3\n")
    assert code_version(repo) != dirty


def test_code_version_without_git_hashes_the_code(tmp_path):
    (tmp_path / "mlcycle").mkdir()
    (tmp_path / "mlcycle" / "m.py").write_text("x = 1\n")
    first = code_version(tmp_path)
    assert first.startswith("content-")
    (tmp_path / "mlcycle" / "m.py").write_text("x = 2\n")
    assert code_version(tmp_path) != first
