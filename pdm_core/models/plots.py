"""Evaluation plots as PNG bytes (matplotlib, headless)."""

from __future__ import annotations

import io

import numpy as np


def _figure():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def classifier_plots(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, bytes]:
    """ROC, precision-recall, confusion matrix at the operating threshold, calibration."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    plots: dict[str, bytes] = {}
    plt, fig, ax = _figure()
    fpr, tpr, _ = roc_curve(y, proba)
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    plots["roc"] = _png(plt, fig)

    plt, fig, ax = _figure()
    precision, recall, _ = precision_recall_curve(y, proba)
    ax.plot(recall, precision)
    ax.axhline(float(np.mean(y)), linestyle=":", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    plots["precision_recall"] = _png(plt, fig)

    plt, fig, ax = _figure()
    matrix = confusion_matrix(y, proba >= threshold, labels=[0, 1])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual",
           title=f"Confusion at threshold {threshold:.2f}")  # fmt: skip
    plots["confusion"] = _png(plt, fig)

    plt, fig, ax = _figure()
    observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, marker="o")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Calibration")
    plots["calibration"] = _png(plt, fig)
    return plots


def unit_errors(true: np.ndarray, pred: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Mean error (predicted - true) of each unit (machine), in sorted unit order."""
    _, inverse = np.unique(units, return_inverse=True)
    error = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return np.bincount(inverse, weights=error) / np.bincount(inverse)


def rul_plots(true: np.ndarray, pred: np.ndarray, units: np.ndarray) -> dict[str, bytes]:
    """Predicted vs true RUL, and each unit's (machine's) mean error, sorted.

    ``units`` names the unit of each scored row; under the last-cycle protocol each unit has
    one row, otherwise its rows' errors are averaged (one bar per machine, not per row).
    """
    plots: dict[str, bytes] = {}
    plt, fig, ax = _figure()
    ax.scatter(true, pred, s=8, alpha=0.6)
    top = float(max(np.max(true), np.max(pred), 1.0))
    ax.plot([0, top], [0, top], linestyle=":", color="grey")
    ax.set(xlabel="true RUL", ylabel="predicted RUL", title="Predicted vs true RUL")
    plots["rul_pred_vs_true"] = _png(plt, fig)

    plt, fig, ax = _figure()
    errors = np.sort(unit_errors(true, pred, units))
    ax.bar(np.arange(len(errors)), errors)
    ax.axhline(0, color="grey")
    ax.set(xlabel=f"unit (sorted, n={len(errors)})", ylabel="mean predicted - true",
           title="Error per unit")  # fmt: skip
    plots["rul_error_per_unit"] = _png(plt, fig)
    return plots
