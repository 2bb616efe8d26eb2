"""The join of late labels to the inference log, on inline frames: every label lands on
its row or is counted with one line saying why."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference
from mlcycle.models.labels import LABELLED_AT, Spec, batch_metrics, join_labels, typed_labels
from mlcycle.monitoring.metrics import regression_metrics

RUN_A, RUN_B, RUN_C = "a" * 32, "b" * 32, "c" * 32
NOW = pd.Timestamp("2026-03-10 12:00", tz="UTC")


def _table() -> pd.DataFrame:
    """Two batches of model m: A (3 rows, scored first) and B (2 rows), as read_table gives."""
    runs = [RUN_A] * 3 + [RUN_B] * 2
    rows = [0, 1, 2, 0, 1]
    return pd.DataFrame(
        {
            "prediction_id": [f"{r}-{i}" for r, i in zip(runs, rows, strict=True)],
            "scored_at": pd.to_datetime(["2026-03-01"] * 3 + ["2026-03-02"] * 2, utc=True),
            "model_version": ["1"] * 3 + ["2"] * 2,
            "row": rows,
            "nom": ["Simon", "Andre", "Leroy", "Simon", "Petit"],
            "prenom": ["Paul", "Yanis", "Hugo", "Paul", "Léa"],
            "age": [62.0, 20.0, 18.0, 63.0, 30.0],
            "prediction": [10.0, 20.0, 30.0, 40.0, 50.0],
            "score_run": runs,
        }
    )


def _spec(**extra) -> Spec:
    return Spec("montant", "regression", identifiers=["nom", "prenom"], now=NOW, **extra)


def _labels(**columns) -> pd.DataFrame:
    """A labels file as read_labels gives it: every field as text."""
    return pd.DataFrame({k: [str(v) for v in values] for k, values in columns.items()})


def test_labels_by_prediction_id_land_on_their_rows_across_two_batches():
    labels = _labels(prediction_id=[f"{RUN_B}-1", f"{RUN_A}-0", f"{RUN_A}-2"], montant=[55, 12, 29])
    joined = join_labels(labels, _table(), _spec())
    assert joined.rows["prediction_id"].tolist() == [f"{RUN_B}-1", f"{RUN_A}-0", f"{RUN_A}-2"]
    assert joined.rows["montant"].tolist() == [55.0, 12.0, 29.0]
    assert joined.rows["prediction"].tolist() == [50.0, 10.0, 30.0]
    assert joined.counts["labels_joined"] == joined.counts["labels_read"] == 3
    assert joined.problems == [] and joined.key == "prediction_id"


def test_unknown_duplicate_wrong_type_and_empty_labels_are_one_line_each_and_lose_nothing_else():
    labels = _labels(
        prediction_id=[f"{RUN_A}-0", f"{RUN_A}-9", f"{RUN_A}-1", f"{RUN_A}-0", f"{RUN_B}-0", "x"],
        montant=["12", "5", "beaucoup", "13", "", "7"],
    )
    joined = join_labels(labels, _table(), _spec(), model_name="m")
    counts = joined.counts
    assert (counts["unknown_labels"], counts["duplicate_labels"]) == (2, 1)
    assert (counts["wrong_type_labels"], counts["missing_labels"]) == (1, 1)
    assert counts["labels_joined"] == 1 and counts["labels_read"] == 6
    # The duplicate: the last label of the file is kept.
    assert joined.rows[["prediction_id", "montant"]].values.tolist() == [[f"{RUN_A}-0", 13.0]]
    assert len(joined.problems) == 4
    assert any("'beaucoup' (line 4)" in line for line in joined.problems)
    assert any("(line 6)" in line and "empty" in line for line in joined.problems)
    assert any("'x'" not in line and "lines 3, 7" in line for line in joined.problems)


def test_a_label_for_a_row_another_model_scored_is_counted_apart_from_unknown_ids():
    labels = _labels(prediction_id=[f"{RUN_C}-0", f"{RUN_A}-1"], montant=[1, 2])
    owners = {RUN_C: "other-model"}
    joined = join_labels(labels, _table(), _spec(), elsewhere=owners.get, model_name="m")
    assert (joined.counts["other_model_labels"], joined.counts["unknown_labels"]) == (1, 0)
    assert "another model ('other-model', line 2)" in joined.problems[0]
    assert joined.rows["prediction_id"].tolist() == [f"{RUN_A}-1"]


def test_a_label_seen_before_is_counted_and_kept_since_the_latest_wins():
    labels = _labels(prediction_id=[f"{RUN_A}-1"], montant=[21])
    joined = join_labels(labels, _table(), _spec(), seen=pd.Index([f"{RUN_A}-1"]))
    assert joined.counts["relabelled_labels"] == 1 and joined.rows["montant"].tolist() == [21.0]


def test_by_identifiers_a_label_goes_to_the_latest_batch_that_scored_the_key():
    labels = _labels(
        nom=["Simon", "Leroy", "Nobody"], prenom=["Paul", "Hugo", "X"], montant=[1, 2, 3]
    )
    joined = join_labels(labels, _table(), _spec())
    # Simon Paul was scored in A and again in B: B, the latest, gets the label.
    assert joined.rows["prediction_id"].tolist() == [f"{RUN_B}-0", f"{RUN_A}-2"]
    assert joined.counts["unknown_labels"] == 1 and joined.key == "nom, prenom"


def test_by_identifiers_a_key_twice_in_one_batch_is_ambiguous_and_skipped():
    table = _table()
    table.loc[4, ["nom", "prenom"]] = ["Simon", "Paul"]  # twice in batch B
    joined = join_labels(_labels(nom=["Simon"], prenom=["Paul"], montant=[1]), table, _spec())
    assert joined.counts["ambiguous_labels"] == 1 and joined.rows.empty
    assert "give their prediction_id" in joined.problems[0]


def test_a_file_without_the_target_or_a_key_is_refused_in_one_line():
    with pytest.raises(MlcycleError, match="no target column 'montant'"):
        join_labels(_labels(prediction_id=["x"], amount=[1]), _table(), _spec())
    with pytest.raises(MlcycleError, match=r"neither by prediction_id nor .*missing: prenom"):
        join_labels(_labels(nom=["Simon"], montant=[1]), _table(), _spec())


def test_class_labels_are_checked_against_the_model_classes_whole_numbers_as_written():
    spec = Spec("churn", "classification", classes=[0, 1])
    values, missing, wrong = typed_labels(pd.Series(["1", "0.0", "2", "oui", "NA"]), spec)
    assert values.tolist()[:2] == [1, 0]
    assert wrong.tolist() == [False, False, True, True, False]
    assert missing.tolist() == [False, False, False, False, True]


def test_a_decimal_comma_reads_as_the_number_it_is():
    values, _, wrong = typed_labels(pd.Series(["12,5", "3"]), _spec())
    assert values.tolist() == [12.5, 3.0] and not wrong.any()


def test_realised_metrics_coverage_and_lag_of_one_batch():
    rows = _table().iloc[:2].assign(montant=[12.0, 18.0])
    rows[LABELLED_AT] = pd.to_datetime(["2026-03-01 00:01", "2026-03-01 00:03"], utc=True)
    metrics = batch_metrics(rows, 3, _spec())
    expected = regression_metrics([12.0, 18.0], [10.0, 20.0])
    assert metrics["realised_mae"] == pytest.approx(expected["mae"])
    assert metrics["realised_r2"] == pytest.approx(expected["r2"])
    assert metrics["label_coverage"] == pytest.approx(2 / 3) and metrics["labelled_rows"] == 2
    assert metrics["label_lag_seconds"] == 120.0


def test_classification_realised_metrics_use_the_logged_probabilities():
    rows = pd.DataFrame(
        {
            "prediction": ["yes", "no", "yes"],
            "proba_no": [0.2, 0.7, 0.4],
            "proba_yes": [0.8, 0.3, 0.6],
            "churn": ["yes", "no", "no"],
            "scored_at": pd.to_datetime(["2026-03-01"] * 3, utc=True),
            LABELLED_AT: pd.to_datetime(["2026-03-02"] * 3, utc=True),
        }
    )
    metrics = batch_metrics(rows, 3, Spec("churn", "classification", classes=["no", "yes"]))
    assert metrics["realised_accuracy"] == pytest.approx(2 / 3)
    assert metrics["realised_roc_auc"] == pytest.approx(1.0)
    assert metrics["label_lag_seconds"] == 86400.0


def test_prediction_ids_are_the_score_run_and_the_row_and_name_their_run_back():
    ids = inference.prediction_ids(RUN_A, np.array([0, 12]))
    assert ids.tolist() == [f"{RUN_A}-0", f"{RUN_A}-12"]
    assert inference.run_of(pd.Series([*ids, "nope", None])).tolist() == [RUN_A, RUN_A, None, None]


def test_a_prediction_id_padded_with_spaces_lands_on_its_row():
    # A spreadsheet's export padded the ids: every label was 'unknown' and nothing joined,
    # while padded identifiers (nom, prenom) were already stripped.
    labels = _labels(prediction_id=[f" {RUN_A}-0 ", f"{RUN_B}-1\t"], montant=[12, 55])
    joined = join_labels(labels, _table(), _spec())
    assert joined.rows["prediction_id"].tolist() == [f"{RUN_A}-0", f"{RUN_B}-1"]
    assert joined.counts["unknown_labels"] == 0 and joined.problems == []


def test_a_labelled_at_that_is_not_a_time_is_taken_as_now_and_said_in_one_line():
    # It was replaced by now without a word, and the label lag measured from it.
    labels = _labels(
        prediction_id=[f"{RUN_A}-0", f"{RUN_A}-1"],
        montant=[12, 20],
        labelled_at=["2026-03-05 10:00", "hier"],
    )
    joined = join_labels(labels, _table(), _spec())
    assert joined.rows[LABELLED_AT].tolist() == [pd.Timestamp("2026-03-05 10:00", tz="UTC"), NOW]
    assert joined.counts["labels_joined"] == 2
    (line,) = joined.problems
    assert "1 labelled_at value(s) are not times, e.g. 'hier' (line 3): taken as now" in line


def test_a_label_dated_before_its_row_was_scored_is_kept_and_said_in_one_line():
    # The batch's label lag came out at minus 25 years: a truth known before the question
    # was asked is a wrong clock or time zone, which the user should hear about.
    labels = _labels(
        prediction_id=[f"{RUN_A}-0", f"{RUN_A}-1"],
        montant=[12, 20],
        labelled_at=["2001-01-01", "2026-03-05"],
    )
    joined = join_labels(labels, _table(), _spec())
    assert joined.counts["labels_joined"] == 2
    (line,) = joined.problems
    assert "1 label(s) dated before their row was scored" in line and "(line 2)" in line


def test_thousands_grouped_as_etl_reads_them_are_numbers():
    # A French export writes '1 080,0' (a space, often a no-break one): etl reads it as
    # 1080, feedback refused it as 'not a number' and lost every label above 999.
    values, _, wrong = typed_labels(
        pd.Series(["2 000,0", "1\u00a0080,5", "1,234.5", "880"]), _spec()
    )
    assert values.tolist() == [2000.0, 1080.5, 1234.5, 880.0] and not wrong.any()
