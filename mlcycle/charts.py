"""Matplotlib figures logged as artifacts. Headless: the Agg backend, nothing shown."""

from __future__ import annotations

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
