"""Sleep-staging metrics (torchmetrics) and test-time aggregation over overlapping sequences."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_cohen_kappa,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
    multiclass_specificity,
)

CLASSES = ("W", "N1", "N2", "N3", "REM")


class SequenceAggregator:
    """Sums log-probabilities of every window covering an epoch (the reference code's rule).

    An epoch in the middle of a night is covered by L windows of stride 1; summing their
    log-softmax and taking the argmax is a product-of-experts vote that uses all contexts.
    """

    def __init__(self, lengths: list[int], num_classes: int) -> None:
        self.sums = [np.zeros((n, num_classes)) for n in lengths]
        self.counts = [np.zeros(n, dtype=np.int64) for n in lengths]

    def add(self, log_probs: torch.Tensor, recording: torch.Tensor, start: torch.Tensor) -> None:
        lp = log_probs.detach().double().cpu().numpy()
        seq_len = lp.shape[1]
        for b, (r, s) in enumerate(zip(recording.tolist(), start.tolist())):
            self.sums[r][s : s + seq_len] += lp[b]
            self.counts[r][s : s + seq_len] += 1

    def predictions(self) -> list[np.ndarray]:
        """Per recording: argmax of the summed log-probabilities (-1 where never covered)."""
        return [np.where(c > 0, s.argmax(1), -1) for s, c in zip(self.sums, self.counts)]


def staging_metrics(
    y_true: np.ndarray | torch.Tensor, y_pred: np.ndarray | torch.Tensor, num_classes: int = 5
) -> dict[str, float]:
    """Accuracy, Cohen's kappa, macro F1 / sensitivity / specificity, per-class F1."""
    t = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    p = torch.as_tensor(np.asarray(y_pred), dtype=torch.long)
    kw = {"num_classes": num_classes}
    out = {
        "acc": multiclass_accuracy(p, t, average="micro", **kw).item(),
        "kappa": multiclass_cohen_kappa(p, t, **kw).item(),
        "f1_macro": multiclass_f1_score(p, t, average="macro", **kw).item(),
        "sens_macro": multiclass_recall(p, t, average="macro", **kw).item(),
        "spec_macro": multiclass_specificity(p, t, average="macro", **kw).item(),
    }
    per_class = multiclass_f1_score(p, t, average="none", **kw)
    names = CLASSES if num_classes == len(CLASSES) else [str(i) for i in range(num_classes)]
    out.update({f"f1_{name}": v.item() for name, v in zip(names, per_class)})
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 5) -> np.ndarray:
    """Rows: true class, columns: predicted."""
    t = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    p = torch.as_tensor(np.asarray(y_pred), dtype=torch.long)
    return multiclass_confusion_matrix(p, t, num_classes).numpy()
