"""The pure half of `score`: which columns are read, how a chunk is typed, what an
output row holds, where the file goes, and the prediction summary."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.outputs import output_path, stamped_file
from mlcycle.models.scoring import (
    Inputs,
    Summary,
    conform_chunk,
    output_frame,
    plan_inputs,
    read_ahead,
)

FILE = Path("batch.csv")
INPUTS = Inputs(features=["age", "region"], numeric=["age"], categorical=["region"])


def test_every_feature_must_be_in_the_header_and_identifiers_are_kept_when_present():
    header = ["nom", "age", "region", "montant_pret"]
    inputs = plan_inputs(
        header, ["age", "region"], ["age"], ["region"], ["nom", "prenom"], None, FILE
    )
    assert inputs.identifiers == ["nom"] and inputs.columns == ["nom", "age", "region"]
    with pytest.raises(MlcycleError, match=r"lacks column\(s\) the model reads: region"):
        plan_inputs(["nom", "age"], ["age", "region"], ["age"], ["region"], [], None, FILE)


def test_an_identifier_named_like_an_output_column_is_refused():
    with pytest.raises(MlcycleError, match=r"column\(s\) row of batch.csv would be overwritten"):
        plan_inputs(["row", "age"], ["age"], ["age"], [], ["row"], None, FILE)
    with pytest.raises(
        MlcycleError, match=r"column\(s\) proba_yes of batch.csv would be overwritten"
    ):
        plan_inputs(["proba_yes", "age"], ["age"], ["age"], [], ["proba_yes"], ["no", "yes"], FILE)


def test_a_chunk_is_typed_as_etl_typed_the_training_rows():
    chunk = pd.DataFrame({"age": ["31", None, "40.5"], "region": ["Bretagne", np.nan, "Corse"]})
    out = conform_chunk(chunk, INPUTS, FILE, first_row=0)
    assert out["age"].dtype == "float64" and np.isnan(out["age"][1])
    assert out["region"].tolist() == ["Bretagne", None, "Corse"]


def test_text_in_a_number_names_the_column_the_row_the_line_and_the_value():
    chunk = pd.DataFrame({"age": ["31", "32", "trente", "x"], "region": ["a", "b", "c", "d"]})
    with pytest.raises(MlcycleError) as error:
        conform_chunk(chunk, INPUTS, FILE, first_row=1000)
    assert str(error.value) == (
        "column 'age' of the input file batch.csv should be numeric but holds 'trente' at "
        "row 1002 (line 1004); 2 such value(s) in rows 1000-1003; nothing was written"
    )


def test_one_output_row_per_input_row_numbered_from_the_chunk_start():
    chunk = pd.DataFrame({"nom": ["A", None], "age": [1.0, 2.0], "region": ["x", "y"]})
    inputs = Inputs(["age", "region"], ["age"], ["region"], ["nom"], ["no", "yes"])
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    out = output_frame(chunk, inputs, 50, np.array(["yes", "no"]), proba)
    assert list(out.columns) == ["nom", "row", "prediction", "proba_no", "proba_yes"]
    assert out["nom"].tolist() == ["A", None] and out["row"].tolist() == [50, 51]
    with pytest.raises(MlcycleError, match="returned 1 predictions for 2 rows"):
        output_frame(chunk, inputs, 0, np.array([1.0]), None)


def test_the_output_goes_under_predictions_by_default_or_where_it_is_told(tmp_path):
    assert output_path("", "m", tmp_path).parent == tmp_path / "predictions" / "m"
    assert output_path("out.parquet", "m", tmp_path) == tmp_path / "out.parquet"
    assert output_path("/abs/x.parquet", "m", tmp_path) == Path("/abs/x.parquet")
    assert output_path("folder/", "m", tmp_path).parent == tmp_path / "folder"
    with pytest.raises(MlcycleError, match="written as Parquet"):
        output_path("out.csv", "m", tmp_path)
    now = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    first = stamped_file(tmp_path, now)
    assert first.name == "20260301T120005Z.parquet"
    first.touch()
    assert stamped_file(tmp_path, now).name == "20260301T120005Z-2.parquet"


def test_the_summary_of_chunks_is_the_summary_of_the_whole():
    values = np.array([1.0, 5.0, np.nan, 3.0, 7.0])
    summary = Summary(None)
    summary.update(values[:2], None)
    summary.update(values[2:], None)
    metrics = summary.metrics()
    finite = values[np.isfinite(values)]
    assert metrics["output_rows"] == 5 and metrics["prediction_missing"] == 1
    assert metrics["prediction_mean"] == pytest.approx(finite.mean())
    assert metrics["prediction_std"] == pytest.approx(finite.std())
    assert (metrics["prediction_min"], metrics["prediction_max"]) == (1.0, 7.0)

    labels = Summary([0, 1, "a b?"])
    labels.update(
        np.array([0, 1, 1]), np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    )
    metrics = labels.metrics()
    assert metrics["prediction_share.1"] == pytest.approx(2 / 3)
    assert metrics["prediction_share.a b_"] == 0.0
    assert metrics["proba_mean.0"] == pytest.approx(0.3)


def test_reading_ahead_keeps_the_order_and_raises_where_the_error_was():
    def items():
        yield from range(5)
        raise MlcycleError("line 6")

    seen = []
    with pytest.raises(MlcycleError, match="line 6"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
