"""The paper's Table 3 (per-class precision / recall / F1 / support, accuracy, weighted
average) plus balanced accuracy, macro F1 and Cohen's kappa - all from scikit-learn
(``classification_report``, ``balanced_accuracy_score``, ``cohen_kappa_score``), the code the
paper's Table 3 layout comes from, so no metric here is re-derived by hand."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    balanced_accuracy_score,
    classification_report,
    cohen_kappa_score,
)


def labels_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` with exactly the counts of ``confusion[true, predicted]``."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = cm.shape[0]
    true = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
    pred = np.repeat(np.tile(np.arange(k), k), cm.ravel())
    return true, pred


def table3_from_labels(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, float]:
    """Table 3 metrics; a class absent from the test set or never predicted scores 0
    (``zero_division=0``), never NaN; balanced accuracy averages the classes present."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    out: dict[str, float] = {"support_total": float(len(y_true))}
    report = classification_report(
        y_true,
        y_pred,
        labels=labels,
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    for name in class_names:
        out[f"precision_{name}"] = report[name]["precision"]
        out[f"recall_{name}"] = report[name]["recall"]
        out[f"f1_{name}"] = report[name]["f1-score"]
        out[f"support_{name}"] = report[name]["support"]
    if len(y_true) == 0:
        zeros = ("acc", "balanced_acc", "kappa", "f1_macro")
        weighted = ("precision_weighted", "recall_weighted", "f1_weighted")
        return {**out, **dict.fromkeys(zeros + weighted, 0.0)}
    out["acc"] = float(np.mean(y_true == y_pred))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": skipped, fine
        warnings.simplefilter("ignore", UserWarning)
        out["balanced_acc"] = balanced_accuracy_score(y_true, y_pred)
    kappa = cohen_kappa_score(y_true, y_pred, labels=labels)
    out["kappa"] = 0.0 if not np.isfinite(kappa) else kappa
    out["f1_macro"] = report["macro avg"]["f1-score"]
    out["precision_weighted"] = report["weighted avg"]["precision"]
    out["recall_weighted"] = report["weighted avg"]["recall"]
    out["f1_weighted"] = report["weighted avg"]["f1-score"]
    return {k: float(v) for k, v in out.items()}


def table3(confusion: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Table 3 metrics from ``confusion[true, predicted]`` (e.g. the paper's Fig. 4)."""
    return table3_from_labels(*labels_from_confusion(confusion), class_names)


def table3_markdown(metrics: dict[str, float], class_names: tuple[str, ...]) -> str:
    """Table 3 of the paper, same rows and columns, plus balanced accuracy and kappa."""
    lines = [
        "| | Precision | Recall | F1-score | Support | Accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(class_names):
        acc = f"{metrics['acc']:.2f}" if i == 0 else ""
        lines.append(
            f"| {name} | {metrics[f'precision_{name}']:.2f} | {metrics[f'recall_{name}']:.2f} "
            f"| {metrics[f'f1_{name}']:.2f} | {int(metrics[f'support_{name}'])} | {acc} |"
        )
    lines.append(
        f"| weighted avg | {metrics['precision_weighted']:.2f} | {metrics['recall_weighted']:.2f}"
        f" | {metrics['f1_weighted']:.2f} | {int(metrics['support_total'])} | |"
    )
    lines.append("")
    lines.append(
        f"Balanced accuracy {metrics['balanced_acc']:.3f}, macro F1 {metrics['f1_macro']:.3f}, "
        f"Cohen's kappa {metrics['kappa']:.3f}."
    )
    return "\n".join(lines) + "\n"


def plot_confusion(
    confusion: np.ndarray, class_names: tuple[str, ...], path: str | Path, title: str = ""
) -> Path:
    """The paper's Fig. 4: scikit-learn's ``ConfusionMatrixDisplay`` of the window counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [n.replace("_", "-") for n in class_names]
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    display = ConfusionMatrixDisplay(np.asarray(confusion), display_labels=labels)
    display.plot(ax=ax, cmap="Blues", values_format="d", colorbar=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "DeepConvLSTM confusion matrix")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
