"""Matplotlib figures logged as artifacts or inlined in the report. Headless: the Agg
backend, nothing shown."""

from __future__ import annotations

import base64
import io
import logging
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

log = logging.getLogger(__name__)


def confusion_matrix_figure(y_true, y_pred, labels: list, title: str):
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roc_figure(y_true, proba: pd.DataFrame, title: str):
    """One-vs-rest ROC curve per class."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    y_true = np.asarray(y_true)
    columns = proba.columns[1:] if proba.shape[1] == 2 else proba.columns
    for label in columns:
        positives = y_true == label
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = skm.roc_curve(positives, proba[label])
        ax.plot(fpr, tpr, label=f"{label} (AUC {skm.auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve_figure(history: dict[str, list[float]], title: str):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, values in history.items():
        ax.plot(range(1, len(values) + 1), values, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)


# Points drawn in a scatter: more only blurs it and grows the page.
MAX_SCATTER_POINTS = 4000
COLORS = {"champion": "#1f77b4", "challenger": "#d62728"}
_DPI = 100


def figure_uri(fig) -> str:
    """A figure as an inline PNG data URI (the report opens offline); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def scatter_figure(y_true, preds: dict[str, np.ndarray], split: str):
    """Predicted vs actual, one colour per model, on a seeded sample of the rows."""
    fig, ax = plt.subplots(figsize=(5, 4))
    keep = np.arange(len(y_true))
    if len(keep) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(keep, MAX_SCATTER_POINTS, replace=False)
    for role, pred in preds.items():
        ax.scatter(y_true[keep], pred[keep], s=6, alpha=0.45, label=role, color=COLORS.get(role))
    low, high = float(np.nanmin(y_true)), float(np.nanmax(y_true))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    sampled = f" ({len(keep)} of {len(y_true)} rows)" if len(keep) < len(y_true) else ""
    ax.set_title(f"{split}{sampled}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def error_figure(y_true, preds: dict[str, np.ndarray], split: str):
    """Histograms of predicted - actual, one outline per model on shared bins."""
    fig, ax = plt.subplots(figsize=(5, 4))
    errors = {role: np.asarray(pred, dtype=float) - y_true for role, pred in preds.items()}
    everything = np.concatenate(list(errors.values()))
    bins = np.histogram_bin_edges(everything[np.isfinite(everything)], bins=40)
    for role, err in errors.items():
        ax.hist(err, bins=bins, histtype="step", linewidth=1.6, label=role, color=COLORS.get(role))
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted - actual")
    ax.set_ylabel("rows")
    ax.set_title(split, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# Optuna is imported by the functions that draw a study: most importers draw none.


def history_figure(study):
    """Optuna's optimisation history of the study (every worker's trials)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    return ax.figure


def importance_figure(study):
    """Parameter importances (fANOVA); None when the trials cannot tell (too few)."""
    import optuna

    try:
        with warnings.catch_warnings():
            # Experimental API, and "few trials in some regime" advice: the chart says so.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.info("no parameter-importance chart: %s", exc)
        return None
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    return ax.figure


# The History section: one point per monitor run of the model (mlcycle.monitoring.history).
# One figure of three panels sharing the runs axis, at most MAX_RUN_LABELS labels and no
# tight_layout: measured here with 50 runs, three separate figures cost ~4 s to draw and
# save (tight_layout over 150 rotated labels), more than the rest of the section.
MAX_RUN_LABELS = 15


def monitor_history_figure(history: list[dict]):
    """The drifted share, a runs x features heatmap of drift scores and both models'
    primary metric, run after run (None without entries). Labels come from each run's
    current data file."""
    from mlcycle.monitoring.history import columns, label

    if not history:
        return None
    names = columns(history)
    x = np.arange(len(history))
    heat_height = 0.25 * max(len(names), 1) + 0.4
    fig, (share_ax, heat_ax, metric_ax) = plt.subplots(
        3,
        1,
        figsize=(7.5, 4.8 + heat_height),
        sharex=True,
        gridspec_kw={"height_ratios": [1.3, max(heat_height, 1.0), 1.3]},
    )
    share = [np.nan if h["drift_share"] is None else h["drift_share"] for h in history]
    share_ax.plot(x, share, marker="o", markersize=3, color="#d62728")
    share_ax.set_ylim(0, 1)
    share_ax.set_ylabel("features\ndrifted", fontsize=8)
    if names:
        scores = np.array(
            [[h["drift_scores"].get(c, np.nan) for h in history] for c in names], dtype=float
        )
        image = heat_ax.imshow(scores, aspect="auto", cmap="viridis", interpolation="nearest")
        heat_ax.set_yticks(np.arange(len(names)), names, fontsize=7)
        fig.colorbar(image, ax=heat_ax, label="drift score", pad=0.01, fraction=0.04)
    heat_ax.set_ylabel("drift score", fontsize=8)
    for role in ("champion", "challenger"):
        values = [np.nan if h[role] is None else h[role] for h in history]
        metric_ax.plot(x, values, marker="o", markersize=3, label=role, color=COLORS[role])
    # A batch without labels: its estimate (open square), then its realised figure (filled)
    # once feedback brought the labels.
    for key, legend, face in (
        ("estimated", "champion, estimated (no labels)", "none"),
        ("realised", "champion, realised (labels came later)", COLORS["champion"]),
    ):
        values = [np.nan if h.get(key) is None else h[key] for h in history]
        if not np.isnan(values).all():
            metric_ax.plot(
                x,
                values,
                marker="s",
                markersize=4,
                linestyle="none",
                label=legend,
                color=COLORS["champion"],
                markerfacecolor=face,
            )
    metric_ax.set_ylabel(history[-1]["primary_metric"], fontsize=8)
    metric_ax.legend(fontsize=7, loc="best")
    step = max(1, -(-len(history) // MAX_RUN_LABELS))
    ticks = x[::step]
    metric_ax.set_xticks(ticks, [label(history[i], i) for i in ticks], rotation=30, ha="right")
    metric_ax.tick_params(axis="x", labelsize=7)
    metric_ax.set_xlim(-0.5, len(x) - 0.5)
    fig.subplots_adjust(left=0.2, right=0.97, top=0.98, bottom=0.14, hspace=0.12)
    return fig
