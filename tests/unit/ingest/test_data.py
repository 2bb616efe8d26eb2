import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest import data
from mlcycle.ingest.data import Schema


def frame():
    return pd.DataFrame(
        {"id": ["a", "b", "c"], "x": [1, 2, None], "c": ["u", None, "v"], "y": [10.5, 20.25, 30.0]}
    )


def test_schema_splits_numeric_and_text_and_drops_identifiers():
    schema = data.build_schema(frame(), "y", "auto", ["id"])
    assert schema.numeric == ["x"] and schema.categorical == ["c"]
    assert schema.dropped == ["id"] and schema.task == "regression"
    assert "id" not in schema.features


def test_the_prediction_id_score_gave_a_row_is_never_a_feature(caplog):
    caplog.set_level("INFO", logger="mlcycle.ingest.data")
    # Two feedback outputs as reference and current, without prediction_id in
    # drop_columns: a unique id per row became a categorical feature, and the champion
    # then refused every new batch for lacking a 'prediction_id' column.
    labelled = frame().assign(prediction_id=["r-0", "r-1", "r-2"])
    schema = data.build_schema(labelled, "y", "auto", ["id"])
    assert "prediction_id" not in schema.features and schema.dropped == ["id", "prediction_id"]
    assert "prediction_id" in caplog.text
    given = data.build_schema(labelled, "y", "auto", ["id", "prediction_id"])
    assert given.dropped == ["id", "prediction_id"]


@pytest.mark.parametrize("name", ["row", "prediction", "scored_at", "model_version", "score_run"])
def test_a_feature_or_target_named_like_a_column_of_the_inference_log_is_refused(name):
    # The log holds the batch's own `row`, `prediction`, ... beside the features: a feature
    # named so was overwritten there (feedback then handed main the model's predictions as
    # that feature), and a target named `prediction` replaced the predictions with the
    # labels, so every realised metric came out perfect.
    named = frame().rename(columns={"x": name})
    with pytest.raises(MlcycleError, match=rf"^column '{name}' of the reference file .* rename"):
        data.build_schema(named, "y", "auto", ["id"])
    with pytest.raises(MlcycleError, match=rf"^column '{name}' of the reference file"):
        data.build_schema(frame().rename(columns={"y": name}), name, "auto", ["id"])
    assert name not in data.build_schema(named, "y", "auto", ["id", name]).features


def test_a_text_column_whose_values_all_differ_is_an_identifier_and_dropped(caplog):
    rng = np.random.default_rng(0)
    rows = 200
    table = pd.DataFrame(
        {
            "transaction": [f"T{i:06d}" for i in range(rows)],
            "city": rng.choice(["Lyon", "Lille", "Nantes"], rows),
            "amount": rng.normal(size=rows),
            "y": rng.normal(size=rows),
        }
    )
    table.loc[::10, "transaction"] = None  # missing ids do not make it a feature
    schema = data.build_schema(table, "y", "auto", [])
    assert schema.features == ["amount", "city"] and schema.dropped == ["transaction"]
    assert "transaction: every value differs in the reference file" in caplog.text
    # Few rows, or one repeated value: a category like any other.
    assert "transaction" in data.build_schema(table.head(40), "y", "auto", []).features
    table.loc[1, "transaction"] = table.loc[2, "transaction"]
    assert "transaction" in data.build_schema(table, "y", "auto", []).features
    # Distinct numbers stored as text, one typo among them: a feature the kinds check names.
    amounts = table.assign(amount=[f"{v:.6f}" for v in table["amount"]])
    amounts.loc[3, "amount"] = "1O.5"
    assert "amount" in data.build_schema(amounts, "y", "auto", []).features


def test_prediction_id_in_drop_columns_of_data_without_it_is_no_warning(caplog):
    # watch names it for every main it starts (the labelled rows carry it, the reference
    # rarely does): a WARNING on every retrain that nobody could act on.
    schema = data.build_schema(frame(), "y", "auto", ["id", "prediction_id", "nope"])
    assert "nope" in caplog.text and "prediction_id" not in caplog.text
    assert schema.dropped == ["id"]


def test_missing_target_column_is_named():
    with pytest.raises(MlcycleError, match="target column 'nope'"):
        data.build_schema(frame(), "nope", "auto", [])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.5, 2.25, 3.0, 4.0], "regression"),
        (["yes", "no", "yes", "no"], "classification"),
        ([0, 1, 1, 0], "classification"),
        (list(range(50)), "regression"),
    ],
)
def test_task_auto_detection(values, expected):
    assert data.infer_task(pd.Series(values, name="t")) == expected


def test_text_target_is_refused_for_regression():
    with pytest.raises(MlcycleError, match="not numeric"):
        data.infer_task(pd.Series(["a", "b"], name="t"), "regression")


def test_unknown_task_names_the_parameter():
    with pytest.raises(MlcycleError, match="parameter task"):
        data.infer_task(pd.Series([1, 2], name="t"), "clustering")


def test_conform_gives_schema_types_and_keeps_holes():
    schema = data.build_schema(frame(), "y", "auto", ["id"])
    out = data.conform(frame(), schema, "reference", "ref.csv")
    assert out["x"].dtype == np.float64 and np.isnan(out["x"].iloc[2])
    assert out["c"].iloc[1] is None and out["c"].iloc[0] == "u"
    assert list(out.columns) == ["x", "c", "y"]


def test_current_missing_feature_columns_are_named():
    schema = Schema(target="y", task="regression", numeric=["x", "z"], categorical=["c"])
    with pytest.raises(MlcycleError, match="missing feature columns of the reference: x, z"):
        data.conform(pd.DataFrame({"c": ["a"], "y": [1.0]}), schema, "current", "new.csv")


def test_text_in_a_numeric_column_is_named():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=[])
    bad = pd.DataFrame({"x": ["1", "lots"], "y": [1.0, 2.0]})
    with pytest.raises(MlcycleError, match="column 'x' of the current file"):
        data.conform(bad, schema, "current", "new.csv")


def test_infinite_features_become_missing_and_an_infinite_target_is_refused():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=[])
    out = data.conform(
        pd.DataFrame({"x": [1.0, np.inf, -np.inf], "y": [1.0, 2.0, 3.0]}), schema, "current", "n"
    )
    assert out["x"].iloc[0] == 1.0 and out["x"].iloc[1:].isna().all()
    with pytest.raises(MlcycleError, match="target column 'y' of the reference file r.csv"):
        data.conform(pd.DataFrame({"x": [1.0], "y": [-np.inf]}), schema, "reference", "r.csv")


def test_kinds_that_differ_between_files_name_the_column_and_both_files():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=["c"])
    paths = {"reference": "old.csv", "current": "new.csv"}
    ref = pd.DataFrame({"x": [1.0, 2.0], "c": ["u", "v"], "y": [1.0, 2.0]})
    cur = pd.DataFrame({"x": ["3,5", "lots"], "c": ["u", "v"], "y": [1.0, 2.0]})
    with pytest.raises(MlcycleError, match="should be numeric, as in the reference") as err:
        data.check_kinds({"reference": ref, "current": cur}, schema, paths)
    assert str(err.value).startswith("column 'x' of the current file new.csv")
    assert "'lots' (1 such values)" in str(err.value) and "old.csv" in str(err.value)
    cur = pd.DataFrame({"x": [3.0, None], "c": [4.5, 1.0], "y": [1.0, 2.0]})
    with pytest.raises(MlcycleError, match="column 'c' of the current file new.csv holds only"):
        data.check_kinds({"reference": ref, "current": cur}, schema, paths)
    cur = pd.DataFrame({"x": [None, None], "c": [None, None], "y": [1.0, 2.0]})
    data.check_kinds({"reference": ref, "current": cur}, schema, paths)


def test_rows_with_missing_target_are_removed_and_counted():
    kept, removed = data.drop_missing_target(
        pd.DataFrame({"x": [1, 2, 3], "y": [1.0, None, 3.0]}), "y", "reference"
    )
    assert removed == 1 and kept["y"].tolist() == [1.0, 3.0]


def test_single_class_is_refused():
    schema = Schema(target="y", task="classification", numeric=["x"], categorical=[])
    with pytest.raises(MlcycleError, match="single class"):
        data.check_classes(pd.DataFrame({"x": [1, 2], "y": ["a", "a"]}), schema, "reference")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"a,b\n", "header but no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not CSV text"),
        (b"a\n1\n2\n", "single column"),
    ],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(MlcycleError, match=message) as err:
        data.read_csv(path, "reference")
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MlcycleError, match="reference file not found: .*nope.csv"):
        data.read_csv(tmp_path / "nope.csv", "reference")


def test_numeric_class_labels_read_the_same_from_both_files(tmp_path):
    """0/1 labels with a hole in one file (read as 0.0/1.0) are one set of classes."""
    from mlcycle.steps.etl import EtlParams, prepare

    rng = np.random.default_rng(0)
    paths = {}
    for role, hole in (("old", False), ("new", True)):
        rows = pd.DataFrame({"x": rng.normal(size=80), "y": rng.integers(0, 2, 80)})
        if hole:
            rows["y"] = rows["y"].astype("float64")
            rows.loc[3, "y"] = np.nan
        paths[role] = tmp_path / f"{role}.csv"
        rows.to_csv(paths[role], index=False)
    result = prepare(
        EtlParams(
            reference=str(paths["old"]),
            current=str(paths["new"]),
            target="y",
            task="classification",
            drop_columns="",
        )
    )
    assert result.schema.classes == [0, 1]
    for name, split in result.splits.items():
        assert split["y"].dtype == "int64", name
        assert {str(v) for v in split["y"]} <= {"0", "1"}, name
    assert result.quality["removed_missing_target"]["current"] == 1


def test_fractional_labels_stay_as_they_are():
    labels = pd.Series([0.5, 1.0, 1.5])
    assert data.whole_labels(labels).tolist() == [0.5, 1.0, 1.5]
