"""Config checks name the key, the value and what is allowed."""

import pytest

from core.checks import (
    ConfigError,
    check_choice,
    check_data_dir,
    check_positive,
    check_range,
)


def test_check_range_open_interval_names_key_and_interval():
    assert check_range("loss.gamma", 0.5, 0, 1, low_open=True, high_open=True) == 0.5
    with pytest.raises(ConfigError, match=r"module.mask_ratio: got 1.0; allowed values: \(0, 1\)"):
        check_range("module.mask_ratio", 1.0, 0, 1, low_open=True, high_open=True)
    with pytest.raises(ConfigError, match=r"loss.gamma: got -0.1; allowed values: \[0, inf\]"):
        check_range("loss.gamma", -0.1, low=0)


def test_check_range_rejects_non_numbers():
    with pytest.raises(ConfigError, match="expected a number"):
        check_range("k", "ten", 1)
    with pytest.raises(ConfigError, match="expected a number"):
        check_range("k", True, 0)


def test_check_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"method: got 'foo'; allowed values: 'mae', 'sdmae'"):
        check_choice("method", "foo", ["mae", "sdmae"])


def test_check_positive_integer():
    assert check_positive("k", 3, integer=True) == 3
    with pytest.raises(ConfigError, match="positive integer"):
        check_positive("k", 2.5, integer=True)
    with pytest.raises(ConfigError):
        check_positive("k", 0)


def test_check_data_dir_says_how_to_get_data(tmp_path):
    assert check_data_dir("datamodule.data_dir", tmp_path, "x") == tmp_path
    with pytest.raises(ConfigError, match="does not exist. Run python -m datamodules.x.download"):
        check_data_dir(
            "datamodule.data_dir", tmp_path / "nope", "Run python -m datamodules.x.download."
        )
