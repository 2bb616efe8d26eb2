"""The feedback step's pure parts: where the labelled rows go, and where they must not."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.labels import Joined, Spec
from mlcycle.steps.feedback import Feedback, check_output, output_path, write_output

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _result(output):
    rows = pd.DataFrame({"nom": ["Simon"], "age": [62.0], "y": [3.0], "prediction_id": ["a-0"]})
    joined = Joined(rows, {"labels_joined": 1}, [], "prediction_id")
    spec = Spec("y", "regression", identifiers=["nom"])
    return Feedback(joined, spec, output, {}, {}, ["age"], output, rows)


def test_the_output_naming_the_labels_file_itself_is_refused(tmp_path):
    # The labelled rows overwrote the user's labels file without a word.
    labels = tmp_path / "april.csv"
    labels.write_text("prediction_id,y\na-0,3\n")
    same = output_path(str(labels), "m", tmp_path / "elsewhere", NOW)
    with pytest.raises(MlcycleError, match=r"^parameter output names the labels file itself"):
        check_output(same, labels)
    relative = output_path("april.csv", "m", tmp_path, NOW)
    with pytest.raises(MlcycleError, match=r"^parameter output names the labels file itself"):
        check_output(relative, labels)
    check_output(output_path("", "m", tmp_path, NOW), labels)


def test_an_output_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    # A folder that cannot be made was a FileNotFoundError traceback and exit code 1.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out" / "labelled.csv"
    with pytest.raises(MlcycleError, match=r"^parameter output: cannot write .*labelled\.csv"):
        write_output(_result(target))
    write_output(_result(tmp_path / "ok" / "labelled.csv"))
    assert (tmp_path / "ok" / "labelled.csv").read_text().splitlines()[0].startswith('"nom"')
