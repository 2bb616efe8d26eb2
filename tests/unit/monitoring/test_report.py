"""The HTML report on small frames: both tasks render, data is escaped (Evidently's page
too), files land where `make run` and the browser look for them."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from mlcycle.ingest.data import Schema
from mlcycle.monitoring import drift, evaluate, promotion, quality, report
from mlcycle.monitoring.report import ModelResult

HOSTILE = "<script>alert(1)</script>"


def _frames(task, rows=120, seed=0):
    rng = np.random.default_rng(seed)
    frames = {}
    for i, name in enumerate(
        ("reference_train", "reference_test", "current_train", "current_test")
    ):
        shift = 1.0 if name.startswith("current") else 0.0
        x = rng.normal(shift, 1, rows)
        z = rng.normal(0, 1, rows)
        y = 3 * x + z + rng.normal(0, 0.3, rows)
        kinds = rng.choice(["a", "b"], rows, p=[0.8, 0.2] if shift else [0.5, 0.5])
        frame = pd.DataFrame({"x": x, HOSTILE: z, "kind": kinds})
        if name == "current_test":
            frame.loc[:4, "kind"] = "<b>unseen</b>"
        frame["target"] = y if task == "regression" else np.where(y > 1.5 + i * 0, "hi", "lo")
        frames[name] = frame
    return frames


def _schema(task):
    return Schema(
        target="target",
        task=task,
        numeric=["x", HOSTILE],
        categorical=[],
        classes=["hi", "lo"] if task == "classification" else [],
    )


def _models(task, frames, schema):
    train = frames["reference_train"]
    features = ["x", HOSTILE]
    if task == "regression":
        champion = LinearRegression().fit(train[["x"]], train["target"])
        challenger = LinearRegression().fit(train[features], train["target"])
        champion_model = _Columns(champion, ["x"])
        challenger_model = _Columns(challenger, features)
    else:
        champion_model = _Columns(
            DummyClassifier(strategy="most_frequent").fit(train[features], train["target"]),
            features,
        )
        challenger_model = _Columns(
            make_pipeline(LogisticRegression()).fit(train[features], train["target"]), features
        )
    out = {}
    for role, model in (("champion", champion_model), ("challenger", challenger_model)):
        result = ModelResult(
            role=role, uri=f"models:/m@{role}", name="m", version="1", aliases=[role]
        )
        out[role] = (result.with_scores(evaluate.score_frames(model, schema, frames)), model)
    return out


class _Columns:
    """A fitted estimator that picks its own columns, as a logged pipeline does."""

    def __init__(self, model, columns):
        self.model, self.columns = model, columns
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_

    def predict(self, features):
        return self.model.predict(features[self.columns])

    def predict_proba(self, features):
        return self.model.predict_proba(features[self.columns])


def sample_context(task):
    frames = _frames(task)
    schema = _schema(task)
    models = _models(task, frames, schema)
    results = {role: r for role, (r, _) in models.items()}
    reference = pd.concat([frames["reference_train"], frames["reference_test"]])
    current = pd.concat([frames["current_train"], frames["current_test"]])
    schema_for_drift = Schema(
        target="target",
        task=task,
        numeric=["x", HOSTILE],
        categorical=["kind"],
        classes=schema.classes,
    )
    columns = {
        drift.prediction_column(role, set(reference.columns)): m for role, (_, m) in models.items()
    }
    result = drift.run_drift(reference, current, schema_for_drift, columns)
    decision = promotion.decide(task, results["champion"].metrics, results["challenger"].metrics)
    return report.assemble(
        model_name="m",
        schema=schema,
        frames=frames,
        models=results,
        decision=decision,
        gate={"promote": True, "min_improvement": 0.0, "tolerance": 0.05},
        quality=quality.by_feature(reference, current, schema_for_drift),
        drift=result,
        prediction_owner={c: c.split("_")[0] for c in columns},
        provenance=[("etl run", "abc"), ("reference data", "old.csv")],
        run_id="r1",
        experiment_id="0",
        tracking_uri="sqlite:///x.db",
    ), result


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_report_renders_verdicts_tables_and_inline_charts(task, tmp_path):
    context, result = sample_context(task)
    folder = report.report_folder(tmp_path, "m", "20260101T000000Z")
    paths = report.write_report(folder, context, result.snapshot)
    html = paths["report"].read_text()
    assert "Data drift: YES" in html and 'id="drift-table"' in html
    assert "Challenger promoted to champion" in html.split('id="drift"')[0]
    assert 'id="comparison"' in html and "▲ better" in html
    metrics = ("r2", "rmse") if task == "regression" else ("f1", "roc_auc", "accuracy")
    assert all(f"<td>{m}" in html for m in metrics)
    n_charts = html.count('src="data:image/png;base64,')
    assert n_charts == (4 if task == "regression" else 8)
    if task == "classification":
        assert 'id="per-class"' in html
    # Offline: nothing is fetched; the Evidently page is linked beside it.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert 'href="evidently.html"' in html and paths["evidently"].stat().st_size > 10_000
    latest = paths["latest"].read_text()
    assert paths["latest"] == tmp_path / "m" / "latest.html"
    assert 'href="20260101T000000Z/evidently.html"' in latest


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_values_from_data_are_escaped_never_raw(tmp_path):
    context, _ = sample_context("regression")
    html = report.render(context | {"evidently_href": None, "self_href": "report.html"})
    assert HOSTILE not in html and "<b>unseen</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;unseen&lt;/b&gt;" in html  # the unseen category, in data quality


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_missing_challenger_still_reports_the_champion_and_says_why(tmp_path):
    frames, schema = _frames("regression"), _schema("regression")
    models = _models("regression", frames, schema)
    champion = models["champion"][0]
    missing = ModelResult(
        role="challenger", uri="models:/m@challenger", error="missing: not in the registry"
    )
    decision = promotion.decide("regression", champion.metrics, None)
    context = report.assemble(
        model_name="m",
        schema=schema,
        frames=frames,
        models={"champion": champion, "challenger": missing},
        decision=decision,
        gate={"promote": True, "min_improvement": 0.0, "tolerance": 0.05},
        quality=[],
        drift=None,
        drift_error="drift could not be measured: test",
    )
    html = report.render(context | {"evidently_href": None, "self_href": "report.html"})
    assert "no challenger" in html and "missing: not in the registry" in html
    assert "Data drift: not measured" in html
    assert html.count("data:image/png") == 4  # the champion alone in each chart


def test_report_folders_never_collide_and_relative_output_is_under_the_project(tmp_path):
    first = report.report_folder(tmp_path, "m", "20260101T000000Z")
    second = report.report_folder(tmp_path, "m", "20260101T000000Z")
    assert first != second and second.name == "20260101T000000Z-2"
    from mlcycle import config

    relative = report.report_folder("reports/", "unit-test-model", "x")
    try:
        assert relative == config.output_root() / "reports" / "unit-test-model" / "x"
    finally:
        relative.rmdir()
        relative.parent.rmdir()


def test_evidently_html_keeps_a_hostile_column_name_inside_its_data(tmp_path):
    name = "</script><script>alert(1)</script>"
    schema = Schema(target="y", task="regression", numeric=[name], categorical=[])
    frame = pd.DataFrame({name: np.arange(50.0), "y": np.arange(50.0)})
    result = drift.run_drift(frame, frame + 1, schema)
    report.save_evidently_html(result.snapshot, tmp_path / "e.html")
    text = (tmp_path / "e.html").read_text()
    assert "alert(1)" in text and name not in text and "<script>alert" not in text
