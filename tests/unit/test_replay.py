"""The production replay's schedule and the labels it sends back, on inline frames."""

import re

import pandas as pd
import pytest

from mlcycle.replay import arrivals, labels_file


def test_labels_arrive_one_batch_later_and_the_owed_ones_after_the_last_batch():
    assert arrivals(4, 1) == [[], [0], [1], [2, 3]]


def test_with_no_delay_each_batch_is_labelled_right_after_it_is_scored():
    assert arrivals(3, 0) == [[0], [1], [2]]


def test_a_delay_longer_than_the_stream_sends_every_label_at_the_end():
    assert arrivals(2, 5) == [[], [0, 1]]


def test_each_prediction_id_gets_the_target_of_the_row_it_scored():
    batch = pd.DataFrame({"nom": ["a", "b", "c"], "montant": [10, 20, 30]})
    predictions = pd.DataFrame({"prediction_id": ["r-2", "r-0"], "row": [2, 0]})
    labels = labels_file(batch, predictions, "montant")
    assert labels.values.tolist() == [["r-2", 30], ["r-0", 10]]


def _csv(path, rows=3):
    pd.DataFrame({"x": range(rows), "y": range(rows)}).to_csv(path, index=False)
    return path


def _stream(tmp_path):
    stream = tmp_path / "stream"
    stream.mkdir()
    _csv(stream / "batch_01.csv")
    return stream


def test_another_data_set_starts_from_its_own_pair_with_its_own_parameters(tmp_path, monkeypatch):
    from mlcycle import replay

    seen = {}

    def fake_replay(steps, params, model_name, done):
        seen.update(steps=steps, params=params)

    def fake_production(stream, params, model_name, delay, work, done, start):
        seen.update(start=start, params=params)

    monkeypatch.setattr(replay, "replay", fake_replay)
    monkeypatch.setattr(replay, "production", fake_production)
    monkeypatch.setattr(replay, "last_report", lambda name: None)
    old, new, stream = _csv(tmp_path / "old.csv"), _csv(tmp_path / "new.csv"), _stream(tmp_path)
    common = ["--stream", str(stream), "--reference", str(old), "--current", str(new)]
    given = ["-P", "target=y", "-P", "task=classification", "--param", "drop_columns="]
    replay.cli(common + given)
    batch = stream / "batch_01.csv"
    assert seen["steps"] == [(old, new), (new, batch)]
    assert seen["params"]["target"] == "y" and seen["params"]["task"] == "classification"
    assert seen["params"]["drop_columns"] == ""
    replay.cli(["--production", *common, *given])
    assert seen["start"] == (old, new) and seen["params"]["target"] == "y"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-P", "target"], "-P takes KEY=VALUE, got 'target'"),
        (["-P", "=y"], "-P takes KEY=VALUE, got '=y'"),
        (["-P", "current=x.csv"], "-P current: give it as --current"),
        (["-P", "epochs=3"], "-P epochs: give it as --epochs"),
        (["--reference", "missing.csv"], "missing.csv is not a file (--reference/--current)"),
    ],
)
def test_a_parameter_the_replay_cannot_take_is_refused_naming_it(tmp_path, args, message):
    from mlcycle import replay

    with pytest.raises(SystemExit, match=re.escape(message)):
        replay.cli(["--stream", str(_stream(tmp_path)), *args])


def test_production_drops_the_prediction_ids_beside_the_users_own_identifiers(
    tmp_path, monkeypatch
):
    from mlcycle import replay

    mains = []
    monkeypatch.setattr(replay, "last_report", lambda name: None)
    monkeypatch.setattr(replay, "label_free_monitor_available", lambda: False)
    start = (_csv(tmp_path / "old.csv"), _csv(tmp_path / "new.csv"))
    params = {"model_name": "m", "target": "y", "drop_columns": "customer_id"}
    # score's run writes predictions: stand in for it after the fact.
    batch = _csv(tmp_path / "batch_01.csv")

    def run_step(entry, step_params, label=""):
        mains.append((entry, step_params))
        if entry == "score":
            pd.DataFrame({"prediction_id": ["r-0", "r-1", "r-2"], "row": [0, 1, 2]}).to_parquet(
                step_params["output"]
            )

    monkeypatch.setattr(replay, "run_step", run_step)
    replay.production([batch], params, "m", 0, tmp_path / "work", [], start)
    first, *_, last = [p for e, p in mains if e == "main"]
    assert (first["reference"], first["current"]) == start
    assert first["drop_columns"] == "customer_id"
    assert last["drop_columns"] == "customer_id,prediction_id" and last["reference"] == start[1]
