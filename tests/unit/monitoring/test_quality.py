"""Data quality, one summary for two readers: the monitor report's per-feature table and
etl's datasets/quality.json, on tiny inline frames."""

import json

import pandas as pd
import pytest

from mlcycle.ingest.data import Schema
from mlcycle.monitoring import quality

SCHEMA = Schema(target="y", task="regression", numeric=["a", "b"], categorical=["c"])
REFERENCE = pd.DataFrame(
    {"a": [1.0, 2.0, 3.0, None], "b": [0.0] * 4, "c": ["x", "y", None, "x"], "y": [1.0] * 4}
)
CURRENT = pd.DataFrame(
    {"a": [0.0, 2.0, 5.0, 2.5], "b": [None] * 4, "c": ["x", "new", "newer", "new"], "y": [1.0] * 4}
)


def test_by_feature_finds_missing_values_unseen_categories_and_out_of_range_numbers():
    rows = {q["column"]: q for q in quality.by_feature(REFERENCE, CURRENT, SCHEMA)}
    assert list(rows) == ["a", "b", "c"]
    assert rows["a"]["missing_reference"] == 0.25 and rows["a"]["out_of_range_share"] == 0.5
    assert rows["a"]["reference_range"] == (1.0, 3.0)
    assert rows["b"]["missing_current"] == 1.0 and rows["b"]["reference_range"] is None
    assert rows["c"]["new_categories"] == ["new", "newer"]
    assert rows["c"]["new_category_share"] == 0.75
    assert rows["c"]["kind"] == "categorical" and rows["a"]["kind"] == "numerical"


def test_summary_lists_new_categories_and_rounded_missing_shares():
    schema = Schema(target="y", task="regression", numeric=[], categorical=["c"])
    ref = pd.DataFrame({"c": ["a", "b"], "y": [1.0, 2.0]})
    cur = pd.DataFrame({"c": ["a", "z", None], "y": [1.0, 2.0, 3.0]})
    summary = quality.summary(ref, cur, schema, {"reference": 0, "current": 2})
    assert summary["new_categories_in_current"] == {"c": ["z"]}
    assert summary["missing_share"]["current"]["c"] == 0.3333
    assert summary["rows"] == {"reference": 2, "current": 3}
    assert summary["removed_missing_target"] == {"reference": 0, "current": 2}


def test_summary_keeps_the_keys_of_quality_json_and_agrees_with_the_table():
    summary = quality.summary(REFERENCE, CURRENT, SCHEMA, {"reference": 1, "current": 0})
    assert list(summary) == [
        "rows",
        "removed_missing_target",
        "missing_share",
        "new_categories_in_current",
    ]
    # Only columns with unseen categories are listed; numbers never are.
    assert summary["new_categories_in_current"] == {"c": ["new", "newer"]}
    for q in quality.by_feature(REFERENCE, CURRENT, SCHEMA):
        ref_share = summary["missing_share"]["reference"][q["column"]]
        assert ref_share == pytest.approx(q["missing_reference"], abs=5e-5)
    json.dumps(summary)  # written as datasets/quality.json
