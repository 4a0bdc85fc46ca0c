"""Vectorised windowing / wavelets / scaler against their straightforward definitions."""

import numpy as np
import pytest
import pywt
from sklearn.preprocessing import StandardScaler

from datamodules.frailty.preprocess import (
    OutlierScaler,
    signal_features,
    sliding_windows,
    wavelet_features,
    wavelet_features_loop,
    wavelet_length,
)
from datamodules.frailty.splits import split_subjects, split_windows


def test_sliding_windows_200_50():
    sig = np.arange(1000 * 6, dtype=np.float32).reshape(1000, 6)
    w = sliding_windows(sig, 200, 50)
    assert w.shape == (17, 6, 200)  # 1 + (1000 - 200) // 50
    assert np.array_equal(w[3, 2], sig[150:350, 2])
    assert sliding_windows(sig[:199], 200, 50).shape == (0, 6, 200)


def test_db1_on_200_samples_gives_203_coefficients():
    assert pywt.dwt_max_level(200, "db1") == 7
    assert wavelet_length(200, "db1") == 203
    lengths = [len(c) for c in pywt.wavedec(np.zeros(200), "db1")]
    assert lengths == [2, 2, 4, 7, 13, 25, 50, 100]


@pytest.mark.parametrize("coeffs, n", [("keep", 203), ("truncate", 200)])
def test_vectorised_wavelets_equal_the_per_window_loop(coeffs, n):
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(37, 6, 200)).astype(np.float32)
    fast = wavelet_features(windows, "db1", coeffs=coeffs)
    slow = wavelet_features_loop(windows, "db1", coeffs=coeffs)
    assert fast.shape == slow.shape == (37, n, 6)
    assert np.allclose(fast, slow, atol=1e-5)
    # 'keep' is invertible: the window comes back from its 203 coefficients.
    if coeffs == "keep":
        parts = np.split(fast[5, :, 2], np.cumsum([2, 2, 4, 7, 13, 25, 50])[:])
        assert np.allclose(pywt.waverec(parts, "db1"), windows[5, 2], atol=1e-4)


@pytest.mark.parametrize(
    "size, level, wavelet", [(37, None, "db1"), (64, 3, "db1"), (50, None, "db2")]
)
def test_fast_path_equals_pywt_for_odd_sizes_levels_and_other_wavelets(size, level, wavelet):
    windows = np.random.default_rng(4).normal(size=(9, 6, size)).astype(np.float32)
    fast = wavelet_features(windows, wavelet, level)
    assert fast.shape[1] == wavelet_length(size, wavelet, level)
    assert np.allclose(fast, wavelet_features_loop(windows, wavelet, level), atol=1e-5)


def test_scaler_matches_sklearn_on_training_samples_only():
    rng = np.random.default_rng(1)
    train = rng.normal(3.0, 2.0, size=(5000, 6))
    test = rng.normal(-10.0, 9.0, size=(2000, 6))  # very different: must not leak in
    sc = OutlierScaler(k=None).fit(train)
    ref = StandardScaler().fit(train)
    assert np.allclose(sc.mean, ref.mean_) and np.allclose(sc.scale, ref.scale_)
    assert np.allclose(sc.transform(test), ref.transform(test), atol=1e-4)


def test_outliers_are_clipped_with_train_robust_bounds():
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, size=(8000, 6))
    train[7, 1] = 1e4  # a spike: the robust bounds ignore it, clipping removes it
    sc = OutlierScaler(k=5.0).fit(train)
    assert np.all(sc.high < 6) and np.all(sc.low > -6)
    assert np.abs(sc.transform(train)).max() < 7  # the spike no longer dominates the scale
    assert sc.scale[1] == pytest.approx(1.0, abs=0.05)


def test_signal_features_equal_scaling_each_window_then_looping():
    """Scaling the recording before windowing is the same as scaling every window."""
    rng = np.random.default_rng(3)
    sig = rng.normal(size=(1300, 6)).astype(np.float32)
    sig[100, 2] = 80.0
    sc = OutlierScaler(k=4.0).fit(sig[:800])
    fast = signal_features(sig, sc)
    windows = sliding_windows(sig, 200, 50)
    per_window = np.stack([sc.transform(w.T).T for w in windows])
    assert np.allclose(fast, wavelet_features_loop(per_window), atol=1e-5)


def test_subject_split_is_disjoint_stratified_and_seeded():
    labels = np.array([0] * 20 + [1] * 16 + [2] * 6)
    a = split_subjects(labels, (0.75, 0.125, 0.125), seed=0)
    for cls in range(3):
        assert set(a[labels == cls]) == {0, 1, 2}  # every class in every split
    assert np.array_equal(a, split_subjects(labels, (0.75, 0.125, 0.125), seed=0))
    assert not np.array_equal(a, split_subjects(labels, (0.75, 0.125, 0.125), seed=1))
    with pytest.raises(ValueError, match="class 2"):
        split_subjects(np.array([0, 0, 0, 1, 1, 1, 2, 2]), (0.75, 0.125, 0.125), 0)


def test_window_split_fractions():
    a = split_windows(8000, (0.75, 0.125, 0.125), seed=0)
    assert np.bincount(a).tolist() == [6000, 1000, 1000]
