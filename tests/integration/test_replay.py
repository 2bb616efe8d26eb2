"""A replay of three small batches through the real `mlflow run . -e main`: the last
report's History shows every run, history.json matches the runs in the store, and from
the second batch on retrain fine-tunes the network champion reloaded from the registry
(a candidate of strategy=auto)."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from mlcycle import config
from mlcycle.ingest import inference
from mlcycle.monitoring import history
from tests.conftest import ROOT, step_env

pytestmark = pytest.mark.integration


def _small(src: Path, dst: Path, rows: int) -> Path:
    pd.read_csv(src).head(rows).to_csv(dst, index=False)
    return dst


def _in_step_env(tracking_uri: str, monkeypatch) -> None:
    """This process in the steps' environment (`step_env`): the replay's `mlflow run`s
    inherit it, and start `python` from its PATH."""
    for name, value in step_env(tracking_uri).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)


def _replay(args: list[str], tracking_uri: str, monkeypatch, capsys) -> str:
    """`python -m mlcycle.replay ARGS`'s own work (its `cli`), in this process and in the
    steps' environment: each step is still its real `mlflow run`. Its printed lines."""
    from mlcycle import replay

    _in_step_env(tracking_uri, monkeypatch)
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    replay.cli(args)
    return capsys.readouterr().out


def test_replay_of_three_batches(tracking_uri, tmp_path, monkeypatch, capsys):
    stream = tmp_path / "stream"
    stream.mkdir()
    for i, batch in enumerate(sorted((config.DATA_DIR / "stream").glob("batch_*.csv"))[:2]):
        _small(batch, stream / f"batch_0{i + 1}.csv", 400)
    # The replay starts where make run starts: df_old -> df_new, then each batch.
    printed = _replay(
        ["--stream", str(stream)]
        + ["--n-trials", "0", "--epochs", "4", "--model-name", "replayed"]
        # Networks only: the champion stays a network that later batches fine-tune (with
        # refitted trees, a 4-epoch network rarely wins: main keeps the best candidate).
        + ["--refit-families", ""],
        tracking_uri,
        monkeypatch,
        capsys,
    )
    last = printed.strip().splitlines()[-1]
    assert last.startswith("last report: ")
    page = Path(last.removeprefix("last report: "))
    assert page.is_file()

    runs = history.monitor_runs("replayed")
    assert len(runs) == 3
    # The first champion is main's own forest, one more candidate of that round; from the
    # first batch on, the champion is a model of an earlier round, defended as incumbent.
    assert [r.data.params["incumbent"] for r in runs] == ["False", "True", "True"]
    (newest,) = [r for r in runs if r.data.tags["mlcycle.report"] == str(page)]
    recorded = json.loads(
        mlflow.artifacts.load_text(f"runs:/{newest.info.run_id}/report/history.json")
    )
    assert [h["run_id"] for h in recorded] == [r.info.run_id for r in runs]
    assert [Path(h["current_data"]).name for h in recorded] == [
        "df_new.csv",
        "batch_01.csv",
        "batch_02.csv",
    ]
    html = page.read_text()
    assert html.count("<tr><td>20") >= 3 and 'id="history"' in html

    # From the second batch on, the champion retrain starts from is a network from the
    # registry, and retrain fine-tunes it: with strategy=auto (the default) as one of the
    # candidates it judges, in a nested run of its own; the first champion is the forest.
    client = mlflow.MlflowClient()
    retrains = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'retrain' and params.model_name = 'replayed'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(retrains) == 3

    def candidates(run):
        nested = mlflow.search_runs(
            search_all_experiments=True,
            output_format="list",
            filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        )
        return {c.data.tags.get("mlcycle.strategy") for c in nested}

    assert "finetune" not in candidates(retrains[0])
    for run in retrains[1:]:
        base = run.data.tags["mlcycle.base_model_version"]
        assert client.get_model_version("replayed", base).tags["mlcycle.family"] == "nn"
        assert "finetune" in candidates(run), candidates(run)
        version = client.get_model_version("replayed", run.data.tags["mlcycle.model_version"])
        assert version.tags["mlcycle.base_model_version"] == base


def test_production_replay_scores_unlabelled_batches_and_trains_on_labels_one_batch_late(
    tracking_uri, tmp_path, monkeypatch, capsys
):
    """Two small batches as production runs them: each scored without its target, its
    labels back one batch later through feedback, main on the labelled rows."""
    stream = tmp_path / "stream"
    stream.mkdir()
    for i, batch in enumerate(sorted((config.DATA_DIR / "stream").glob("batch_*.csv"))[:2]):
        _small(batch, stream / f"batch_0{i + 1}.csv", 300)
    work = tmp_path / "work"
    # Its own start pair (half of df_old, df_new) and a parameter of every main, as a
    # replay of another data set gives them.
    start = tmp_path / "start"
    start.mkdir()
    reference = _small(config.REFERENCE_CSV, start / "df_old.csv", 1000)
    current = _small(config.CURRENT_CSV, start / "df_new.csv", 1000)
    _replay(
        ["--production", "--stream", str(stream)]
        + ["--reference", str(reference), "--current", str(current), "-P", "test_size=0.25"]
        + ["--n-trials", "0", "--epochs", "2", "--model-name", "prod", "--work", str(work)]
        # The loop is what is tested, not the candidates: no tree refits (8 min -> 4 here).
        + ["--refit-families", ""],
        tracking_uri,
        monkeypatch,
        capsys,
    )

    def runs(step):
        return mlflow.search_runs(
            search_all_experiments=True,
            output_format="list",
            filter_string=f"tags.`{config.STEP_TAG}` = '{step}' "
            "and tags.`mlcycle.model_name` = 'prod'",
            order_by=["attributes.start_time ASC"],
        )

    mains = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'main' and params.model_name = 'prod'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(mains) == 3 and mains[0].data.params["current"] == str(current)
    assert {m.data.params["test_size"] for m in mains} == {"0.25"}
    scores = runs("score")
    assert len(scores) == 2
    # Scored without the target: the inference log has no montant_pret column.
    for run in scores:
        logged = inference.read_batch(run.info.run_id, "prod")
        assert len(logged) == 300 and "montant_pret" not in logged.columns
    # The labels of batch 1 came after batch 2 was scored, then batch 2's at the end.
    batches = runs("feedback_batch")
    assert [b.data.tags["mlcycle.score_run"] for b in batches] == [r.info.run_id for r in scores]
    assert scores[1].info.start_time < batches[0].info.start_time
    assert all(b.data.metrics["label_coverage"] == 1.0 for b in batches)
    # main ran first on df_new, then on each batch's labelled rows, as current; each batch
    # was monitored without its labels as soon as it was scored.
    entries = history_of("prod")
    currents = [Path(h["current_data"]).name for h in entries if h["labels"] == "present"]
    assert currents == ["df_new.csv", "batch_01.labelled.csv", "batch_02.labelled.csv"]
    label_free = [Path(h["current_data"]).name for h in entries if h["labels"] == "absent"]
    assert label_free == ["batch_01.unlabelled.csv", "batch_02.unlabelled.csv"]
    # Both batches' labels came before the last main: the History shows each batch's
    # estimate and, beside it, the realised figure its feedback measured.
    realised = {b.data.tags["mlcycle.score_run"]: b.data.metrics["realised_r2"] for b in batches}
    shown = [(h["estimated"], h["realised"]) for h in entries if h["labels"] == "absent"]
    assert [r for _, r in shown] == [realised[s.info.run_id] for s in scores]
    assert all(e is not None for e, _ in shown)
    labelled = pd.read_csv(work / "batch_01.labelled.csv")
    truth = pd.read_csv(stream / "batch_01.csv")
    assert labelled["montant_pret"].tolist() == truth["montant_pret"].tolist()


def history_of(model_name: str) -> list[dict]:
    newest = history.monitor_runs(model_name)[-1]
    return json.loads(mlflow.artifacts.load_text(f"runs:/{newest.info.run_id}/report/history.json"))


def test_a_replay_that_stops_says_how_far_it_got_and_where_it_stopped(
    tracking_uri, tmp_path, monkeypatch
):
    """A batch without the target: its main fails in etl; the replay keeps its exit code
    and its own last line names the batch."""
    from mlcycle import replay

    _in_step_env(tracking_uri, monkeypatch)
    broken = tmp_path / "batch_01.csv"
    pd.read_csv(config.DATA_DIR / "stream" / "batch_01.csv").drop(
        columns=[config.DEFAULT_TARGET]
    ).to_csv(broken, index=False)
    done: list = []
    params = {"model_name": "stopped", "n_trials": "0", "epochs": "2"}
    with pytest.raises(replay.Stopped) as stopped:
        replay.replay([(config.CURRENT_CSV, broken)], params, "stopped", done)
    assert stopped.value.code != 0 and (stopped.value.entry, stopped.value.batch) == (
        "main",
        "batch_01.csv",
    )
    assert done == []
    assert replay.summary(len(done), 1, stopped.value) == (
        f"replay: 0 of 1 batch(es) done; stopped at batch_01.csv: main exited {stopped.value.code}"
    )
