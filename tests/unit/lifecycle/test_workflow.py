import shutil
import subprocess

import mlflow
import pytest

from mlcycle import config
from mlcycle.lifecycle import aliases as alias_moves
from mlcycle.lifecycle.workflow import (
    Step,
    code_version,
    data_identity,
    full_parameters,
    script_arguments,
    step_key,
)
from tests.conftest import sqlite_store


def test_parameters_are_compared_as_the_strings_mlflow_logs():
    # The MLflow example's cache missed here: 42 (int) never equalled '42' (logged).
    assert full_parameters("etl", {"seed": 42}) == full_parameters("etl", {"seed": "42"})
    assert full_parameters("etl", {})["test_size"] == "0.2"


def test_a_step_run_in_process_gets_the_command_line_mlproject_gives_its_script(tmp_path):
    """main runs its local children in its own process (`cli.run_child`) from the words
    of MLproject's command, quoted as MLflow quotes them for the shell."""
    spaced = tmp_path / "my data" / "old loans.csv"
    args = script_arguments(Step("etl", {"reference": str(spaced), "seed": 7}))
    assert args[args.index("--reference") + 1] == str(spaced)
    assert args[args.index("--seed") + 1] == "7"
    assert args[args.index("--drop-columns") + 1] == "nom,prenom"  # the default
    assert args[args.index("--test-size") + 1] == "0.2"
    # Every option the script declares, as the command names them.
    from entrypoints import etl

    declared = {opt for p in etl.main.params for opt in p.opts}
    assert {a for a in args if a.startswith("--")} == declared - {"--help"}


def test_a_project_whose_command_is_not_our_script_runs_through_mlflow(tmp_path):
    root = project_root(tmp_path / "other", {})
    text = (root / "MLproject").read_text()
    (root / "MLproject").write_text(text.replace("python -m entrypoints.etl", "bash etl.sh", 1))
    assert script_arguments(Step("etl", {}), root) is None


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


def project_root(folder, files: dict[str, str]):
    """A project root of its own (a git-URL run gets a new temporary checkout each time)."""
    folder.mkdir(parents=True)
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(config.PROJECT_ROOT / name, folder / name)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def etl_step(root, reference="data/old.csv", current="data/new.csv"):
    """etl as main hands it over: absolute paths into the root it runs from."""
    paths = [root / reference, root / current]
    params = {"reference": str(paths[0]), "current": str(paths[1])}
    return Step("etl", params, data_files=paths)


def test_key_holds_data_by_content_and_project_path_not_absolute_path(tmp_path):
    files = {"data/old.csv": "x,y\n1,2\n", "data/new.csv": "x,y\n3,4\n"}
    one = project_root(tmp_path / "checkout-1", files)
    two = project_root(tmp_path / "checkout-2", files)
    key = step_key(etl_step(one), "code-1", one)
    assert step_key(etl_step(two), "code-1", two) == key
    # Other content at the same place: another key.
    (two / "data/new.csv").write_text("x,y\n3,5\n")
    assert step_key(etl_step(two), "code-1", two) != key
    (two / "data/new.csv").write_text(files["data/new.csv"])
    # The same contents in other roles, or under another name: another key.
    swapped = etl_step(two, reference="data/new.csv", current="data/old.csv")
    assert step_key(swapped, "code-1", two) != key
    (two / "data/copy.csv").write_text(files["data/new.csv"])
    assert step_key(etl_step(two, current="data/copy.csv"), "code-1", two) != key


def test_a_data_file_outside_the_project_keeps_its_absolute_path(tmp_path):
    root = project_root(tmp_path / "checkout", {})
    outside = tmp_path / "mine.csv"
    outside.write_text("x,y\n1,2\n")
    assert data_identity(outside, root).startswith(f"{outside}@sha256:")
    assert data_identity(root / ".." / "mine.csv", root) == data_identity(outside, root)


@pytest.fixture(scope="module")
def registry_client(tmp_path_factory):
    """One real SQLite registry for this module's alias tests (one model name each)."""
    with pytest.MonkeyPatch.context() as patch:
        uri = sqlite_store(tmp_path_factory.mktemp("registry"))
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield mlflow.MlflowClient()
        mlflow.set_tracking_uri(None)


def new_model(client, name: str, versions: int, folder) -> None:
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source=str(folder))


def aliases(client, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_key_follows_the_version_an_alias_resolves_to(registry_client, tmp_path):
    new_model(registry_client, "keyed", 2, tmp_path)
    uri = "models:/keyed@champion"
    step = Step("retrain", {"epochs": 2, "base_model": uri}, model_uris=[uri])
    registry_client.set_registered_model_alias("keyed", "champion", "1")
    first = step_key(step, "c")
    registry_client.set_registered_model_alias("keyed", "champion", "2")
    second = step_key(step, "c")
    assert second != first
    registry_client.set_registered_model_alias("keyed", "champion", "1")
    assert step_key(step, "c") == first
    registry_client.delete_registered_model_alias("keyed", "champion")
    assert step_key(step, "c") not in (first, second)


def adopt_baseline(model_name, forest, started_from):
    """main's force_baseline, as it asks the aliases module."""
    moves = alias_moves.adoption(alias_moves.read_state(model_name), forest, started_from)
    return alias_moves.apply(model_name, moves)


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_forced_baseline_becomes_the_champion_and_the_old_one_previous(registry_client, tmp_path):
    new_model(registry_client, "forced", 3, tmp_path)
    # No champion yet: the forest takes the place.
    assert adopt_baseline("forced", "1", "")
    assert aliases(registry_client, "forced") == {"champion": "1"}
    assert adopt_baseline("forced", "2", "1")
    assert aliases(registry_client, "forced") == {"champion": "2", "previous": "1"}
    # Already the champion: nothing to move.
    assert not adopt_baseline("forced", "2", "2")
    assert aliases(registry_client, "forced") == {"champion": "2", "previous": "1"}


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_replayed_start_does_not_undo_a_later_promotion(registry_client, tmp_path):
    """A warm re-run starts from the state the last identical run started from (champion
    1); that run's monitor has promoted version 3 since: the forest must not take it back."""
    new_model(registry_client, "replayed", 3, tmp_path)
    registry_client.set_registered_model_alias("replayed", "champion", "3")
    registry_client.set_registered_model_alias("replayed", "previous", "2")
    assert not adopt_baseline("replayed", "2", "1")
    assert not adopt_baseline("replayed", "2", "")
    assert aliases(registry_client, "replayed") == {"champion": "3", "previous": "2"}


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
