"""The paper's Table 3 (per-class precision / recall / F1 / support, accuracy, weighted
average) plus balanced accuracy, macro F1 and Cohen's kappa, from one confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def table3(confusion: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Metrics from ``confusion[true, predicted]``; empty classes give 0 (as sklearn's
    ``zero_division=0``), never NaN."""
    cm = np.asarray(confusion, dtype=float)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    weights = support / total if total else np.zeros_like(support)
    acc = tp.sum() / total if total else 0.0
    expected = (support * predicted).sum() / total**2 if total else 0.0
    kappa = (acc - expected) / (1 - expected) if expected < 1 else 0.0
    present = support > 0
    out = {
        "acc": acc,
        "balanced_acc": recall[present].mean() if present.any() else 0.0,
        "kappa": kappa,
        "f1_macro": f1.mean(),
        "precision_weighted": (precision * weights).sum(),
        "recall_weighted": (recall * weights).sum(),
        "f1_weighted": (f1 * weights).sum(),
        "support_total": total,
    }
    for i, name in enumerate(class_names):
        out[f"precision_{name}"] = precision[i]
        out[f"recall_{name}"] = recall[i]
        out[f"f1_{name}"] = f1[i]
        out[f"support_{name}"] = support[i]
    return {k: float(v) for k, v in out.items()}


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
    """Counts with row-normalised shading, like the paper's Fig. 4; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    labels = [n.replace("_", "-") for n in class_names]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "DeepConvLSTM confusion matrix")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
