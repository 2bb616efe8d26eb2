"""The pure half of `score`: which columns are read, how a chunk is typed, what an
output row holds, where the file goes, and the prediction summary."""

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.outputs import output_path, stamped_file
from mlcycle.models.progress import Progress, estimate_rows
from mlcycle.models.scoring import (
    Inputs,
    Predictor,
    conform_chunk,
    missing_text,
    plan_inputs,
    read_ahead,
    score_file,
)
from mlcycle.models.scoring_output import Summary, output_frame

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


def test_placeholders_and_infinities_are_missing_and_counted_per_column_as_etl_reads_them():
    chunk = pd.DataFrame(
        {"age": ["31", "?", "#N/A", "inf", "-Infinity", "1e999", "4,5"], "region": ["NA"] * 7}
    )
    missing: dict = {}
    out = conform_chunk(chunk, INPUTS, FILE, first_row=0, missing=missing)
    assert out["age"].isna().tolist() == [False, *[True] * 5, False]
    assert out["age"].iloc[-1] == 4.5 and out["region"].tolist() == [None] * 7
    conform_chunk(chunk, INPUTS, FILE, first_row=7, missing=missing)
    assert missing == {"placeholders": {"age": 4}, "infinite": {"age": 6}}
    assert missing_text(missing) == "4 placeholder(s) in age, 6 infinite value(s) in age"


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


class Clock:
    """A clock the test moves: 10 s a chunk."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_rewrites_one_line_with_rows_rate_and_time_left():
    clock, stream = Clock(), Terminal()
    progress = Progress(400_000, True, 50_000, stream=stream, clock=clock)
    for _ in range(2):
        clock.now += 10
        progress.update(50_000)
    progress.close()
    shown = stream.getvalue()
    assert shown.count("\r") == 2 and shown.endswith("\n")
    assert "scored 100,000 of 400,000 rows (25 %), 5,000 rows/s, 1 min 00 s left" in shown


def test_off_a_terminal_progress_is_a_log_line_every_n_chunks(caplog):
    clock, stream = Clock(), io.StringIO()
    progress = Progress(1_000_000, False, 50_000, stream=stream, every=3, clock=clock)
    with caplog.at_level(logging.INFO, logger="mlcycle.models.scoring"):
        for _ in range(7):
            clock.now += 2
            progress.update(50_000)
        progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "scored 150,000 of ~1,000,000 rows (15 %), 25,000 rows/s, 34 s left",
        "scored 300,000 of ~1,000,000 rows (30 %), 25,000 rows/s, 28 s left",
    ]
    assert stream.getvalue() == ""  # nothing drawn where no one watches


def test_a_file_of_one_chunk_shows_no_progress(caplog):
    stream = Terminal()
    progress = Progress(800, True, 50_000, stream=stream, every=1, clock=Clock())
    with caplog.at_level(logging.INFO, logger="mlcycle.models.scoring"):
        progress.update(800)
        progress.close()
    assert stream.getvalue() == "" and not caplog.records


def test_rows_of_a_file_are_counted_when_small_and_estimated_when_large(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n" + "".join(f"{i:04d},x\n" for i in range(1000)))
    assert estimate_rows(path) == (1000, True)
    rows, exact = estimate_rows(path, head_bytes=200)
    assert not exact and 900 <= rows <= 1100


def test_score_file_logs_its_progress_on_a_long_file(tmp_path, caplog):
    path = tmp_path / "batch.csv"
    path.write_text("age,region\n" + "".join(f"{i},north\n" for i in range(30)))

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return frame["age"].to_numpy()

    with caplog.at_level(logging.INFO, logger="mlcycle.models.scoring"):
        progress = Progress(*estimate_rows(path), 10, stream=io.StringIO(), every=1)
        scored = score_file(
            path, INPUTS, Predictor(predict), tmp_path / "out.parquet", 10, progress=progress
        )
    assert scored.rows == 30
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scored")]
    assert [line.split(" rows")[0] for line in lines] == [
        "scored 10 of 30",
        "scored 20 of 30",
        "scored 30 of 30",
    ]


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_chunks_are_predicted_on_one_blas_thread_and_the_limit_is_given_back(tmp_path):
    """The reader thread parses the next chunk on the other core meanwhile: a network's
    matrix products on two BLAS threads spun against it."""
    from threadpoolctl import threadpool_limits

    path = tmp_path / "batch.csv"
    path.write_text("age,region\n" + "".join(f"{i},north\n" for i in range(30)))
    seen: list[list[int]] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        seen.append(_blas_threads())
        return (frame[["age"]].to_numpy(dtype=float) @ np.ones((1, 1)))[:, 0]  # a BLAS call

    # Two BLAS threads around the call, whatever the environment set (make test sets 1).
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before), before
        scored = score_file(path, INPUTS, Predictor(predict), tmp_path / "out.parquet", 10)
        assert _blas_threads() == before
    assert scored.rows == 30 and seen == [[1] * len(before)] * 3


def test_a_chunk_that_cannot_be_written_stops_the_file_and_leaves_no_output(tmp_path):
    """Chunks are written in a thread while the next is predicted: a write that fails
    (the second chunk's predictions do not fit the output's column) still ends the file
    with the error and nothing where the output goes."""
    path = tmp_path / "batch.csv"
    path.write_text("age,region\n" + "".join(f"{i},north\n" for i in range(30)))
    calls: list[int] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        calls.append(len(frame))
        if len(calls) == 2:
            return np.array(["not a number"] * len(frame), dtype=object)
        return frame["age"].to_numpy(dtype=float)

    output = tmp_path / "out.parquet"
    with pytest.raises(Exception, match="not a number|float|double"):
        score_file(path, INPUTS, Predictor(predict), output, 10)
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.csv"]
