"""The monitor's HTML report: it renders and writes, it does not score.

Reads models already scored (`evaluate.score_frames`), the drift result, the data-quality
table and the decision; writes `report.html` (Jinja templates of `reports/templates/`,
autoescaped: column names and categories come from data) and Evidently's own HTML to
`OUTPUT/<model_name>/<timestamp>/`, and `latest.html` beside the timestamped folders.
Charts are inline PNGs (base64), so the page opens offline and makes no request."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from mlcycle import config
from mlcycle.ingest.data import Schema
from mlcycle.monitoring import charts, evaluate
from mlcycle.monitoring.drift import SAMPLE_SEED
from mlcycle.monitoring.evaluate import TEST_SPLITS, Scores
from mlcycle.monitoring.metrics import PRIMARY

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EVIDENTLY_FILE = "evidently.html"
LATEST_FILE = "latest.html"
ROLES = ("champion", "challenger")


@dataclass
class ModelResult:
    """One model as the report shows it: its identity, and its scores on the test splits."""

    role: str
    uri: str
    name: str | None = None  # the registered model's name, when the URI names a version
    version: str | None = None
    aliases: list[str] = field(default_factory=list)
    family: str | None = None
    run_id: str | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    probabilities: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.metrics)

    def with_scores(self, scores: Scores) -> ModelResult:
        """Keep what `evaluate.score_frames` computed: metrics, predictions, probabilities."""
        self.metrics.update(scores.metrics)
        self.predictions.update(scores.predictions)
        self.probabilities.update(scores.probabilities)
        return self


def _metrics(model: ModelResult | None) -> dict[str, float] | None:
    return model.metrics if model is not None and model.ok else None


def per_class(
    schema: Schema,
    frames: dict[str, pd.DataFrame],
    models: dict[str, ModelResult],
    split: str = "current_test",
) -> list[dict]:
    """Rows of the per-class table: support, then each scored model's precision, recall, F1."""
    y_true = frames[split][schema.target].to_numpy()
    labels = list(schema.classes) or sorted(pd.unique(y_true).tolist(), key=str)
    rows = [
        {"label": label, "support": int((y_true == label).sum()), "models": {}} for label in labels
    ]
    for role, model in models.items():
        if not model.ok or split not in model.predictions:
            continue
        scores = evaluate.per_class(y_true, model.predictions[split], labels)
        for row in rows:
            row["models"][role] = scores[row["label"]]
    return rows


def performance_charts(
    schema: Schema, frames: dict[str, pd.DataFrame], models: dict[str, ModelResult]
) -> list[dict]:
    """Regression: predicted vs actual and error distribution per split, both models on one
    chart. Classification: confusion matrix and ROC per split and model."""
    scored = {role: m for role, m in models.items() if m.ok}
    out = []
    for split in TEST_SPLITS:
        if not scored or split not in frames:
            continue
        y_true = frames[split][schema.target].to_numpy()
        if schema.task == "regression":
            preds = {role: m.predictions[split] for role, m in scored.items()}
            out.append(
                {
                    "title": f"predicted vs actual, {split}",
                    "uri": charts.figure_uri(charts.scatter_figure(y_true, preds, split)),
                }
            )
            out.append(
                {
                    "title": f"error distribution, {split}",
                    "uri": charts.figure_uri(charts.error_figure(y_true, preds, split)),
                }
            )
            continue
        for role, m in scored.items():
            fig = charts.confusion_matrix_figure(
                y_true, m.predictions[split], schema.classes, f"{role}, {split}"
            )
            out.append(
                {"title": f"confusion matrix, {role}, {split}", "uri": charts.figure_uri(fig)}
            )
            proba = m.probabilities.get(split)
            if proba is not None:
                fig = charts.roc_figure(y_true, proba, f"ROC, {role}, {split}")
                out.append({"title": f"ROC curves, {role}, {split}", "uri": charts.figure_uri(fig)})
    return out


def environment(templates: Path = config.TEMPLATES_DIR) -> jinja2.Environment:
    """Autoescape everywhere: values from data (column names, categories) are never markup."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env


def _num(value, digits: int = 4) -> str:
    if not _finite(value):
        return "—"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10**-digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{digits}f}"


def _pct(value, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %" if _finite(value) else "—"


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def render(context: dict, template: str = "report.html") -> str:
    return environment().get_template(template).render(**context)


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


# In config, so that monitor's parameters check it without importing this module.
output_folder = config.report_output_folder


def report_folder(output: str | Path, model_name: str, stamp: str) -> Path:
    """OUTPUT/<model_name>/<stamp>/, a relative OUTPUT taken from the project root; a
    suffix keeps two reports of the same second apart."""
    base = output_folder(output, model_name).parent
    folder = base / model_name / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = base / model_name / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return folder


def write_report(folder: Path, context: dict, snapshot=None) -> dict[str, Path]:
    """report.html and evidently.html in the folder, latest.html one level up (the same
    page, its links pointing into the folder)."""
    paths = {"report": folder / REPORT_FILE}
    if snapshot is not None:
        paths["evidently"] = folder / EVIDENTLY_FILE
        save_evidently_html(snapshot, paths["evidently"])
    links = {
        "evidently_href": EVIDENTLY_FILE if snapshot is not None else None,
        "self_href": REPORT_FILE,
    }
    paths["report"].write_text(render({**context, **links}), encoding="utf-8")
    paths["latest"] = folder.parent / LATEST_FILE
    prefix = f"{folder.name}/"
    latest = {
        "evidently_href": prefix + EVIDENTLY_FILE if snapshot is not None else None,
        "self_href": prefix + REPORT_FILE,
    }
    paths["latest"].write_text(render({**context, **latest}), encoding="utf-8")
    log.info("report: %s", paths["report"])
    return paths


def save_evidently_html(snapshot, path) -> None:
    """Evidently's own HTML, with its embedded data made safe for a <script> block.

    Evidently 0.7 writes its data with plain `json.dumps` inside <script>: a column named
    `</script><script>...` would end the block and run as markup. JSON escapes \\u003c,
    \\u003e and \\u0026 mean the same strings to JavaScript and can never close a tag."""
    from unittest import mock

    from evidently.legacy.utils import dashboard

    class _ScriptSafeEncoder(dashboard.NumpyEncoder):
        def encode(self, o):
            text = super().encode(o)
            return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    with mock.patch.object(dashboard, "NumpyEncoder", _ScriptSafeEncoder):
        snapshot.save_html(str(path))  # Evidently writes only when given a str path


def assemble(
    *,
    model_name: str,
    schema: Schema,
    frames: dict[str, pd.DataFrame],
    models: dict[str, ModelResult],
    decision,
    gate: dict,
    quality: list[dict],
    drift=None,
    drift_error: str | None = None,
    prediction_owner=None,
    provenance: list[tuple[str, str]] = (),
    moved: str | None = None,
    run_id: str = "",
    experiment_id: str = "",
    tracking_uri: str = "",
    generated_at: str | None = None,
    gate_picture: str | None = None,
    history: dict | None = None,
) -> dict:
    """Everything the template reads, computed once; the template only formats."""
    import evidently

    scored = {role: m for role, m in models.items() if m.ok}
    per = per_class(schema, frames, models) if schema.task == "classification" else None
    return {
        "model_name": model_name,
        "task": schema.task,
        "target": schema.target,
        "primary": PRIMARY[schema.task],
        "generated_at": generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "drift": drift,
        "drift_error": drift_error,
        "drifted_features": drift.drifted_features() if drift else [],
        "prediction_owner": prediction_owner or {},
        "sample_seed": SAMPLE_SEED,
        "evidently_version": evidently.__version__,
        "roles": ROLES,
        "models": models,
        "comparison": evaluate.compare(
            schema.task, _metrics(models.get("champion")), _metrics(models.get("challenger"))
        )
        if scored
        else [],
        "test_rows": {name: len(frames[name]) for name in TEST_SPLITS},
        "charts": performance_charts(schema, frames, models),
        "per_class": per if scored else None,
        "per_class_roles": list(scored),
        "decision": decision,
        "gate": gate,
        "moved": moved,
        "quality": quality,
        "gate_picture": gate_picture,
        "history": history,
        "provenance": list(provenance),
        "run_id": run_id,
        "experiment_id": experiment_id,
        "ui_hint": f"mlflow ui --backend-store-uri {tracking_uri or config.tracking_uri()}",
    }
