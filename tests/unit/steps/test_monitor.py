"""The monitor step's pure parts on inline dicts and frames: its parameters, what the gate
is told, the alias plan the report shows, the metrics and the provenance it logs."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.lifecycle.aliases import Move
from mlcycle.monitoring import comparison, promotion, relationship
from mlcycle.monitoring.drift import ColumnDrift, DriftResult
from mlcycle.monitoring.report import ModelResult
from mlcycle.steps import monitor
from mlcycle.steps.monitor import MonitorParams

R2 = {"current_test_r2": 0.7, "reference_test_r2": 0.9}


def _result(role, version="1", name="m", metrics=None, **fields) -> ModelResult:
    return ModelResult(
        role=role,
        uri=f"models:/{name}@{role}",
        name=name,
        version=version,
        metrics=dict(R2 if metrics is None else metrics),
        **fields,
    )


@pytest.mark.parametrize(
    ("tolerance", "logged", "gate"),
    [("auto", "auto", None), (" AUTO ", "auto", None), ("", "auto", None), ("1", "1.0", 1.0)],
)
def test_validate_spells_the_tolerance_as_logged_and_gives_the_gate_a_number(
    tolerance, logged, gate, tmp_path
):
    params = MonitorParams(tolerance=tolerance, output=str(tmp_path)).validate()
    assert params.tolerance == logged and params.gate_tolerance == gate
    assert (tmp_path / "loan-amount").is_dir()  # the report folder, made before any run


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tolerance": "lots"}, "parameter tolerance must be auto or a number >= 0, got 'lots'"),
        ({"tolerance": "-1"}, "parameter tolerance must be a number >= 0, got -1.0"),
        ({"min_improvement": math.nan}, "parameter min_improvement must be a number >= 0"),
        ({"sample_size": -5}, "parameter sample_size must be a number >= 0, got -5"),
    ],
)
def test_validate_refuses_bad_numbers_with_one_line(changes, message, tmp_path):
    params = dataclasses.replace(MonitorParams(output=str(tmp_path)), **changes)
    with pytest.raises(MlcycleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params.validate()
    assert not (tmp_path / "loan-amount").exists()  # refused before the folder is made


def test_validate_refuses_an_output_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(MlcycleError, match=f"parameter output: cannot write reports to {blocker}"):
        MonitorParams(output=str(blocker / "reports")).validate()


def test_models_default_to_the_aliases_of_the_registered_model():
    assert monitor.model_uris(MonitorParams(model_name="m")) == {
        "champion": "models:/m@champion",
        "challenger": "models:/m@challenger",
    }
    given = monitor.model_uris(MonitorParams(model_name="m", challenger="models:/m/4"))
    assert given["challenger"] == "models:/m/4"


def test_a_registry_version_names_the_model_its_aliases_run_and_family():
    version = ModelVersion(
        "m",
        "3",
        0,
        run_id="r1",
        aliases=["challenger", "b"],
        tags=[ModelVersionTag("mlcycle.family", "nn")],
    )
    result = comparison.describe_version(ModelResult("challenger", "models:/m/3"), version)
    assert (result.name, result.version, result.run_id, result.family) == ("m", "3", "r1", "nn")
    assert result.aliases == ["b", "challenger"]


def test_the_gate_is_told_which_model_failed_and_which_is_merely_missing():
    missing = ModelResult(
        "challenger", "models:/m@challenger", error="missing: not in the registry"
    )
    inputs = comparison.gate_inputs({"champion": _result("champion"), "challenger": missing}, "m")
    assert inputs["challenger"] is None and inputs["challenger_error"] is None
    assert inputs["champion"] == R2 and not inputs["same_version"]
    broken = _result("champion", error="failed to load: boom")
    inputs = comparison.gate_inputs(
        {"champion": broken, "challenger": _result("challenger", "2")}, "m"
    )
    assert inputs["champion"] is None and inputs["champion_error"] == "failed to load: boom"


def test_the_champion_own_version_or_another_model_cannot_be_promoted():
    same = {"champion": _result("champion", "2"), "challenger": _result("challenger", "2")}
    assert comparison.gate_inputs(same, "m")["same_version"]
    foreign = {"champion": _result("champion"), "challenger": _result("challenger", name="x")}
    error = comparison.gate_inputs(foreign, "m")["challenger_error"]
    assert (
        error
        == "models:/x@challenger is not a registered version of m, so it cannot become its champion"
    )


def test_decide_applies_the_gate_settings_of_the_parameters():
    results = {
        "champion": _result("champion", "1", metrics={**R2, "current_test_r2": 0.6}),
        "challenger": _result("challenger", "2"),
    }
    params = MonitorParams(model_name="m", promote=True)
    assert comparison.decide(params, "regression", results).status == promotion.PROMOTED
    off = dataclasses.replace(params, promote=False)
    assert comparison.decide(off, "regression", results).status == promotion.QUALIFIED
    strict = dataclasses.replace(params, min_improvement=0.5)
    assert comparison.decide(strict, "regression", results).status == promotion.NOT_PROMOTED


def _decision(status):
    promote, requested = {
        promotion.PROMOTED: (True, True),
        promotion.QUALIFIED: (True, False),
        promotion.NOT_PROMOTED: (False, True),
    }[status]
    return promotion.Decision(promote, "because", requested=requested)


def test_only_a_promotion_plans_moves_and_previous_is_only_this_model_s_champion():
    state = {"champion": "1", "challenger": "2", "previous": None}
    results = {"champion": _result("champion", "1"), "challenger": _result("challenger", "2")}
    for status in (promotion.QUALIFIED, promotion.NOT_PROMOTED):
        assert monitor.planned_moves(_decision(status), state, results, "m") == []
    moves = monitor.planned_moves(_decision(promotion.PROMOTED), state, results, "m")
    assert moves == [
        Move("previous", "1", None),
        Move("champion", "2", "1"),
        Move("challenger", None, "2"),
    ]
    results["champion"] = _result("champion", "7", name="other")
    assert comparison.compared_champion(results, "m") is None
    moves = monitor.planned_moves(_decision(promotion.PROMOTED), state, results, "m")
    assert [m.alias for m in moves] == ["champion", "challenger"]


def test_the_report_shows_this_model_s_aliases_as_the_moves_leave_them():
    results = {
        "champion": _result("champion", "1", aliases=["champion", "stable"]),
        "challenger": _result("challenger", "2", aliases=["challenger"]),
    }
    moves = [Move("previous", "1", None), Move("champion", "2", "1"), Move("challenger", None, "2")]
    after = monitor.aliases_after(results, moves, "m")
    assert after["champion"] == ["previous", "stable"]
    assert after["challenger"] == ["champion"]
    other = {"champion": _result("champion", "1", name="x", aliases=["champion"])}
    after = monitor.aliases_after(other, moves, "m")
    assert after["champion"] == ["champion"]  # another model's aliases never move


def test_predictions_of_scored_models_get_drift_columns_apart_from_the_data():
    schema = Schema(target="y", task="regression", numeric=["champion_prediction"], categorical=[])
    results = {
        "champion": _result("champion"),
        "challenger": _result("challenger", error="failed to score: x"),
    }
    loaded = {
        "champion": (results["champion"], "model-a"),
        "challenger": (results["challenger"], "b"),
    }
    models, owners = comparison.predictors(schema, loaded, results)
    assert models == {"_champion_prediction": "model-a"}
    assert owners == {"_champion_prediction": "champion"}


def _drift_result():
    columns = [
        ColumnDrift("a", "feature", "numerical", "wasserstein", 0.3, 0.1, True),
        ColumnDrift("y", "target", "numerical", "wasserstein", 0.05, 0.1, False),
    ]
    return DriftResult(columns, 0.5, 1, 2, 0.5, 100, 80, {"reference": 100, "current": 80})


def test_step_metrics_hold_drift_both_models_finite_metrics_and_the_decision():
    results = {
        "champion": _result(
            "champion", metrics={"current_test_r2": math.nan, "current_test_mae": 1.5}
        ),
        "challenger": _result("challenger", error="missing: not in the registry", metrics={}),
    }
    numbers = comparison.step_metrics(_drift_result(), results, _decision(promotion.PROMOTED))
    assert numbers == {
        "promoted": 1.0,
        "gate_not_enough_rows": 0.0,
        "drift_share": 0.5,
        "n_drifted_columns": 1.0,
        "dataset_drift": 1.0,
        "drift_sample_rows": 80.0,
        "target_drift": 0.0,
        "target_drift_score": 0.05,
        "drift_score.a": 0.3,
        "champion_current_test_mae": 1.5,
    }
    assert comparison.step_metrics(None, {}, _decision(promotion.QUALIFIED)) == {
        "promoted": 0.0,
        "gate_not_enough_rows": 0.0,
    }


def test_gate_settings_state_the_tolerance_as_the_report_shows_it():
    assert comparison.gate_settings(MonitorParams())["tolerance"] == "its gain on current_test"
    stated = comparison.gate_settings(MonitorParams(tolerance="0.05", promote=True))
    assert stated.pop("relationship")["status"] == "not measured"
    assert stated == {
        "incumbent": True,
        "promote": True,
        "min_improvement": 0.0,
        "tolerance": "0.05 (absolute)",
        "confidence_text": "95%",
        "resamples": "2,000",
    }


def test_provenance_names_runs_data_models_and_the_store():
    results = {
        "champion": _result("champion", "1", aliases=["champion"], run_id="t1"),
        "challenger": ModelResult("challenger", "runs:/abc/model"),
    }
    rows = comparison.provenance(
        run_id="m1",
        experiment_id="0",
        etl_run="e1",
        etl_params={"reference": "old.csv"},
        results=results,
        sample_size=0,
        tracking_uri="sqlite:///x.db",
    )
    assert rows == [
        ("monitor run", "m1"),
        ("experiment", "0"),
        ("etl run", "e1"),
        ("reference data", "old.csv"),
        ("current data", ""),
        ("champion", "models:/m@champion = version 1 (aliases: champion), trained in run t1"),
        ("challenger", "runs:/abc/model"),
        ("drift sample_size", "auto (≤ 100,000)"),
        ("tracking store", "sqlite:///x.db"),
    ]


def test_decision_tags_name_the_report_and_the_versions_compared(tmp_path):
    results = {"champion": _result("champion", "1"), "challenger": ModelResult("challenger", "u")}
    tags = comparison.decision_tags(_decision(promotion.NOT_PROMOTED), results, tmp_path / "r.html")
    assert tags == {
        promotion.DECISION_TAG: promotion.NOT_PROMOTED,
        promotion.REASON_TAG: "because",
        "mlcycle.report": str(tmp_path / "r.html"),
        "mlcycle.champion_version": "1",
    }


class _Broken:
    def predict(self, features):
        raise ValueError("no such column")


def test_a_model_that_fails_to_score_is_reported_not_raised():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=[])
    frame = pd.DataFrame({"x": np.arange(5.0), "y": np.arange(5.0)})
    frames = {"reference_test": frame, "current_test": frame}
    result = comparison.score_model(ModelResult("champion", "u"), _Broken(), schema, frames)
    assert result.error == "failed to score: ValueError: no such column" and not result.ok
    untouched = comparison.score_model(ModelResult("challenger", "u"), None, schema, frames)
    assert untouched.error is None and untouched.metrics == {}


class _Evidence:
    def __init__(self, cost, overlap=1.0):
        self.cost = self.excused = cost
        self.changed = cost > 0
        self.overlap = overlap
        self.apart = overlap < relationship.OVERLAP_FLOOR
        self.separated_by = ("annee",) if self.apart else ()

    def text(self):
        return "r2 cost +0.5000 on 400 reference_test rows"


def test_the_page_states_the_relationship_evidence_and_the_rule_it_applied():
    changed = comparison.gate_settings(MonitorParams(), _Evidence(0.4))["relationship"]
    assert changed["status"] == "changed" and "beyond the 0.4000" in changed["rule"]
    assert changed["evidence"].startswith("r2 cost")
    held = comparison.gate_settings(MonitorParams(), _Evidence(0.0))["relationship"]
    assert held["status"] == "held" and "strict" in held["rule"]
    given = comparison.gate_settings(MonitorParams(tolerance="0.05"), _Evidence(0.4))[
        "relationship"
    ]
    assert "applies it as given" in given["rule"]
    apart = comparison.gate_settings(MonitorParams(), _Evidence(0.0, overlap=0.03))["relationship"]
    assert apart["status"] == "apart"
    assert "overlap 0.03, below 0.1; told apart by annee" in apart["rule"]
    assert "judged on current_test" in apart["rule"]


def test_promote_on_a_batch_without_labels_is_refused_before_the_run():
    # It was ignored without a word (exit 0): a user asking for a promotion on an
    # unlabelled batch believed the gate had judged and kept the champion.
    from mlcycle.steps.params.monitor import MonitorParams

    with pytest.raises(MlcycleError, match=r"^parameter promote: .*score_run.*no labels"):
        MonitorParams(score_run="abc", promote=True).validate()
    MonitorParams(score_run="abc").validate()
    MonitorParams(promote=True).validate()
