"""The monitor's HTML report: performance of champion and challenger, charts, rendering.

Reads a schema, the test splits and models; writes `report.html` (Jinja templates of
`reports/templates/`, autoescaped: column names and categories come from data) and
Evidently's own HTML to `OUTPUT/<model_name>/<timestamp>/`, and `latest.html` beside the
timestamped folders. Charts are inline PNGs (base64), so the page opens offline and
makes no request."""

from __future__ import annotations

import base64
import io
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlcycle import charts, config
from mlcycle.data import Schema
from mlcycle.drift import SAMPLE_SEED, save_evidently_html
from mlcycle.errors import MlcycleError
from mlcycle.evaluate import TEST_SPLITS, predict, predict_proba
from mlcycle.metrics import LOWER_IS_BETTER, PRIMARY, evaluate, metric_names, prefixed

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EVIDENTLY_FILE = "evidently.html"
LATEST_FILE = "latest.html"
ROLES = ("champion", "challenger")
# Points drawn in a scatter: more only blurs it and grows the page.
MAX_SCATTER_POINTS = 4000
_DPI = 100


@dataclass
class ModelResult:
    """One model's identity, and its predictions and metrics on the test splits."""

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


def score_model(
    result: ModelResult, model, schema: Schema, frames: dict[str, pd.DataFrame], names=TEST_SPLITS
) -> ModelResult:
    """Predict once per split and compute the same metrics `evaluate.score` logs."""
    for name in names:
        frame = frames[name]
        features, target = frame[schema.features], frame[schema.target]
        predicted = predict(model, features)
        proba = (
            predict_proba(model, features, schema.classes)
            if schema.task == "classification"
            else None
        )
        result.predictions[name], result.probabilities[name] = predicted, proba
        result.metrics.update(prefixed(evaluate(schema.task, target, predicted, proba), name))
    return result


def comparison(task: str, models: dict[str, ModelResult]) -> list[dict]:
    """One row per split and metric: both values, the delta and whether it is better."""
    rows = []
    champion, challenger = models.get("champion"), models.get("challenger")
    for split in TEST_SPLITS:
        for metric in metric_names(task):
            key = f"{split}_{metric}"
            old = champion.metrics.get(key) if champion and champion.ok else None
            new = challenger.metrics.get(key) if challenger and challenger.ok else None
            delta, mark = None, ""
            if _finite(old) and _finite(new):
                delta = new - old
                if abs(delta) < 1e-12:
                    mark = "same"
                else:
                    better = delta < 0 if metric in LOWER_IS_BETTER else delta > 0
                    mark = "better" if better else "worse"
            rows.append(
                {
                    "split": split,
                    "metric": metric,
                    "champion": old,
                    "challenger": new,
                    "delta": delta,
                    "mark": mark,
                    "primary": metric == PRIMARY[task],
                }
            )
    return rows


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def per_class(
    schema: Schema,
    frames: dict[str, pd.DataFrame],
    models: dict[str, ModelResult],
    split: str = "current_test",
) -> list[dict]:
    """Precision, recall, F1 and support per class, for each model that scored."""
    y_true = frames[split][schema.target].to_numpy()
    labels = list(schema.classes) or sorted(pd.unique(y_true).tolist(), key=str)
    rows = [
        {"label": label, "support": int((y_true == label).sum()), "models": {}} for label in labels
    ]
    for role, model in models.items():
        if not model.ok or split not in model.predictions:
            continue
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, model.predictions[split], labels=labels, zero_division=0
        )
        for i, row in enumerate(rows):
            row["models"][role] = {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
            }
    return rows


def figure_uri(fig) -> str:
    """A matplotlib figure as an inline PNG data URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    charts.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
                    "uri": figure_uri(_scatter_figure(y_true, preds, split)),
                }
            )
            out.append(
                {
                    "title": f"error distribution, {split}",
                    "uri": figure_uri(_error_figure(y_true, preds, split)),
                }
            )
            continue
        for role, m in scored.items():
            fig = charts.confusion_matrix_figure(
                y_true, m.predictions[split], schema.classes, f"{role}, {split}"
            )
            out.append({"title": f"confusion matrix, {role}, {split}", "uri": figure_uri(fig)})
            proba = m.probabilities.get(split)
            if proba is not None:
                fig = charts.roc_figure(y_true, proba, f"ROC, {role}, {split}")
                out.append({"title": f"ROC curves, {role}, {split}", "uri": figure_uri(fig)})
    return out


_COLORS = {"champion": "#1f77b4", "challenger": "#d62728"}


def _scatter_figure(y_true, preds: dict[str, np.ndarray], split: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    keep = np.arange(len(y_true))
    if len(keep) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(keep, MAX_SCATTER_POINTS, replace=False)
    for role, pred in preds.items():
        ax.scatter(y_true[keep], pred[keep], s=6, alpha=0.45, label=role, color=_COLORS.get(role))
    low, high = float(np.nanmin(y_true)), float(np.nanmax(y_true))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    sampled = f" ({len(keep)} of {len(y_true)} rows)" if len(keep) < len(y_true) else ""
    ax.set_title(f"{split}{sampled}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _error_figure(y_true, preds: dict[str, np.ndarray], split: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    errors = {role: np.asarray(pred, dtype=float) - y_true for role, pred in preds.items()}
    everything = np.concatenate(list(errors.values()))
    bins = np.histogram_bin_edges(everything[np.isfinite(everything)], bins=40)
    for role, err in errors.items():
        ax.hist(err, bins=bins, histtype="step", linewidth=1.6, label=role, color=_COLORS.get(role))
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted - actual")
    ax.set_ylabel("rows")
    ax.set_title(split, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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


def render(context: dict, template: str = "report.html") -> str:
    return environment().get_template(template).render(**context)


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def output_folder(output: str | Path, model_name: str) -> Path:
    """OUTPUT/<model_name>/, created now: a relative OUTPUT is taken from the project root.
    A folder that cannot be written is a bad `output` parameter, found before any work."""
    base = Path(output).expanduser()
    if not base.is_absolute():
        base = config.PROJECT_ROOT / base
    folder = base / model_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlcycleError(
            f"parameter output: cannot write reports to {folder}: {exc.strerror or exc}"
        ) from exc
    if not os.access(folder, os.W_OK):
        raise MlcycleError(f"parameter output: cannot write reports to {folder}: not writable")
    return folder


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


def prediction_column(role: str, taken) -> str:
    """A column name for a model's predictions that no feature or target already uses."""
    name = f"{role}_prediction"
    while name in taken:
        name = f"_{name}"
    return name


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
        "comparison": comparison(schema.task, models) if scored else [],
        "test_rows": {name: len(frames[name]) for name in TEST_SPLITS},
        "charts": performance_charts(schema, frames, models),
        "per_class": per if scored else None,
        "per_class_roles": list(scored),
        "decision": decision,
        "gate": gate,
        "moved": moved,
        "quality": quality,
        "provenance": list(provenance),
        "run_id": run_id,
        "experiment_id": experiment_id,
        "ui_hint": f"mlflow ui --backend-store-uri {tracking_uri or config.tracking_uri()}",
    }
