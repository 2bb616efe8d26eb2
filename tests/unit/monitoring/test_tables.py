"""Metric names MLflow accepts for any column name, and the tables a monitor run logs."""

import math
import unicodedata

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_metric_name

from mlcycle.monitoring import tables
from mlcycle.monitoring.drift import ColumnDrift, DriftResult

HOSTILE = [
    "revenu (€/mois)",
    "a/b",
    "a:b",
    "a//b",
    "../x",
    "</script><script>alert(1)</script>",
    "taux%",
    "tab\there",
    "line\nbreak",
    "🙂",
    "",
    "x" * 400,
]


def _refused_by_mlflow(name: str) -> bool:
    try:
        _validate_metric_name(name)
    except MlflowException:
        return True
    return False


def test_a_name_mlflow_accepts_is_kept_accents_included():
    assert tables.metric_safe("nationalité_francaise") == "drift_score.nationalité_francaise"
    assert tables.metric_safe("région 2 - île.x") == "drift_score.région 2 - île.x"
    assert not _refused_by_mlflow("drift_score.nationalité_francaise")


def test_a_decomposed_accent_which_mlflow_refuses_is_composed_not_hashed():
    decomposed = unicodedata.normalize("NFD", "nationalité_francaise")
    assert decomposed != "nationalité_francaise"
    assert _refused_by_mlflow("drift_score." + decomposed)
    assert tables.metric_safe(decomposed) == "drift_score.nationalité_francaise"


@pytest.mark.parametrize("name", HOSTILE)
def test_every_other_name_becomes_one_mlflow_accepts(name):
    key = tables.metric_safe(name)
    assert not _refused_by_mlflow(key), key
    assert key.startswith("drift_score.") and len(key) <= tables.MAX_METRIC_NAME
    assert key == tables.metric_safe(name)  # the same column, the same metric, every run


def test_a_refused_character_is_replaced_and_the_name_hashed_so_names_never_collide():
    assert _refused_by_mlflow("drift_score.revenu (€/mois)")
    key = tables.metric_safe("revenu (€/mois)")
    assert (
        key.startswith("drift_score.revenu ___mois__")
        and len(key) == len("drift_score.revenu ___mois_") + 1 + tables.HASH_DIGITS
    )
    # Names that read the same once their refused characters are replaced stay apart,
    # and apart from a column really named with underscores.
    keys = {tables.metric_safe(n) for n in ("a/b", "a:b", "a?b", "a_b")}
    assert len(keys) == 4 and "drift_score.a_b" in keys
    long_keys = {tables.metric_safe("x" * 400), tables.metric_safe("x" * 401)}
    assert len(long_keys) == 2


def test_all_hostile_names_get_distinct_metrics():
    keys = [tables.metric_safe(n) for n in HOSTILE]
    assert len(set(keys)) == len(keys)


def _drift() -> DriftResult:
    columns = [
        ColumnDrift("revenu (€/mois)", "feature", "numerical", "K-S p_value", 0.001, 0.05, True),
        ColumnDrift("nationalité_francaise", "feature", "categorical", "Z-test", 0.4, 0.05, False),
        ColumnDrift("age", "feature", "numerical", "K-S p_value", math.nan, 0.05, False),
        ColumnDrift("montant_pret", "target", "numerical", "K-S p_value", 0.02, 0.05, True),
        ColumnDrift(
            "champion_prediction", "prediction", "numerical", "K-S p_value", 0.2, 0.05, False
        ),
        ColumnDrift(
            "_challenger_prediction", "prediction", "numerical", "K-S p_value", 0.01, 0.05, True
        ),
    ]
    return DriftResult(columns, 1 / 3, 1, 3, 0.5, 100, 80, {"reference": 100, "current": 80})


OWNERS = {"champion_prediction": "champion", "_challenger_prediction": "challenger"}


def test_drift_metrics_name_features_by_column_and_predictions_by_model():
    numbers = tables.drift_metrics(_drift(), OWNERS)
    assert numbers == {
        tables.metric_safe("revenu (€/mois)"): 0.001,
        "drift_score.nationalité_francaise": 0.4,
        "champion_prediction_drift_score": 0.2,
        "champion_prediction_drift": 0.0,
        "challenger_prediction_drift_score": 0.01,
        "challenger_prediction_drift": 1.0,
    }  # no NaN (MLflow would store it, but no chart can draw it); the target's are elsewhere
    assert all(not _refused_by_mlflow(name) for name in numbers)


def test_the_drift_table_holds_the_reports_rows_and_names_each_rows_metric():
    table = tables.drift_table(_drift(), OWNERS)
    assert table["column"].tolist() == [c.column for c in _drift().columns]
    assert table["metric"].tolist() == [
        tables.metric_safe("revenu (€/mois)"),
        "drift_score.nationalité_francaise",
        "drift_score.age",
        "target_drift_score",
        "champion_prediction_drift_score",
        "challenger_prediction_drift_score",
    ]
    assert table.loc[0, "drifted"] and table.loc[0, "method"] == "K-S p_value"


def test_the_comparison_table_keeps_every_row_of_the_report():
    rows = [
        {
            "split": "current_test",
            "metric": "r2",
            "champion": 0.5,
            "challenger": None,
            "delta": None,
            "mark": "",
            "primary": True,
        }
    ]
    table = tables.comparison_table(rows)
    assert table.to_dict("records") == [
        {
            "split": "current_test",
            "metric": "r2",
            "primary": True,
            "champion": 0.5,
            "challenger": None,
            "delta": None,
            "challenger_is": "",
        }
    ]
