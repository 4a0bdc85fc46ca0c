"""FrailtyClassifier: loss terms, class weights, Table 3 metrics against scikit-learn."""

from functools import partial

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
)

from core.checks import ConfigError
from experiments.frailty.metrics import plot_confusion, table3, table3_markdown
from experiments.frailty.module import FrailtyClassifier, balanced_class_weights
from models.frailty import DeepConvLSTM

torch.set_num_threads(1)
NAMES = ("robust", "pre_frail", "frail")


def _module(**kw):
    net = DeepConvLSTM(in_channels=6, conv_filters=[4], lstm_units=[6])
    return FrailtyClassifier(net, partial(torch.optim.Adam, lr=1e-3), **kw)


def test_table3_matches_sklearn_classification_report():
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=500, p=[0.45, 0.45, 0.1])
    pred = np.where(rng.random(500) < 0.7, y, rng.integers(0, 3, 500))
    cm = confusion_matrix(y, pred, labels=[0, 1, 2])
    got = table3(cm, NAMES)
    ref = classification_report(y, pred, output_dict=True, target_names=list(NAMES))
    for name in NAMES:
        assert got[f"precision_{name}"] == pytest.approx(ref[name]["precision"])
        assert got[f"recall_{name}"] == pytest.approx(ref[name]["recall"])
        assert got[f"f1_{name}"] == pytest.approx(ref[name]["f1-score"])
        assert got[f"support_{name}"] == ref[name]["support"]
    assert got["acc"] == pytest.approx(ref["accuracy"])
    assert got["f1_weighted"] == pytest.approx(ref["weighted avg"]["f1-score"])
    assert got["precision_weighted"] == pytest.approx(ref["weighted avg"]["precision"])
    assert got["f1_macro"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert got["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["kappa"] == pytest.approx(cohen_kappa_score(y, pred))


def test_table3_reproduces_the_papers_figure_4_numbers(tmp_path):
    """The paper's confusion matrix (Fig. 4) gives its Table 3 (rounded to 2 decimals)."""
    cm = np.array([[36202, 2228, 633], [1970, 34258, 2041], [434, 571, 5536]])
    m = table3(cm, NAMES)
    assert round(m["acc"], 2) == 0.91 and round(m["f1_weighted"], 2) == 0.91
    assert [round(m[f"f1_{n}"], 2) for n in NAMES] == [0.93, 0.91, 0.75]
    assert [round(m[f"precision_{n}"], 2) for n in NAMES] == [0.94, 0.92, 0.67]
    assert [int(m[f"support_{n}"]) for n in NAMES] == [39063, 38269, 6541]
    md = table3_markdown(m, NAMES)
    assert "| frail | 0.67 | 0.85 | 0.75 | 6541 |" in md
    png = plot_confusion(cm, NAMES, tmp_path / "cm.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_empty_class_gives_zero_not_nan():
    m = table3(np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]]), NAMES)
    assert all(np.isfinite(list(m.values())))
    assert m["f1_frail"] == 0.0 and m["balanced_acc"] == pytest.approx((1 + 0.8) / 2)


def test_balanced_weights_like_sklearn():
    w = balanced_class_weights([100, 50, 10])
    assert torch.allclose(w, torch.tensor([160 / 300, 160 / 150, 160 / 30]))


def test_training_loss_adds_keras_l2_on_conv_and_dense_kernels():
    torch.manual_seed(0)
    mod = _module(l2=0.01)
    x, y = torch.randn(4, 20, 6), torch.tensor([0, 1, 2, 1])
    mod.log = lambda *a, **k: None
    mod.eval()  # no dropout: the two forward passes agree
    loss = mod.training_step((x, y, torch.zeros(4, dtype=torch.long)), 0)
    ce = torch.nn.functional.cross_entropy(mod(x), y)
    assert torch.allclose(loss, ce + 0.01 * mod.net.l2_penalty())


def test_fixed_class_weights_change_the_loss():
    torch.manual_seed(0)
    mod = _module(class_weights=[1.0, 1.0, 5.0])
    mod.setup("fit")
    x, y = torch.randn(6, 20, 6), torch.tensor([0, 1, 2, 2, 1, 0])
    mod.eval()
    ce, logits, _ = mod._step((x, y))
    ref = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor([1.0, 1.0, 5.0]))
    assert torch.allclose(ce, ref)


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"l2": -1.0}, "module.l2"),
        ({"class_weights": "inverse"}, "module.class_weights"),
        ({"class_weights": [1.0, 2.0]}, "module.class_weights"),
        ({"class_weights": [1.0, 0.0, 2.0]}, r"module.class_weights\[1\]"),
    ],
)
def test_bad_module_config_names_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        _module(**kw)
