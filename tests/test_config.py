"""Settings: data root and checkpoint folders from arguments and environment, device choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paintae import config


def test_data_root_prefers_argument_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "env"))
    assert config.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert config.data_root() == tmp_path / "env"
    assert config.data_root("  ") == tmp_path / "env"


def test_data_root_is_none_without_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.DATA_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.data_root() is None
    (tmp_path / ".cache" / "paintae" / "data").mkdir(parents=True)
    assert config.data_root() == tmp_path / ".cache" / "paintae" / "data"


def test_checkpoint_dirs_put_shipped_folder_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.CHECKPOINTS_ENV, str(tmp_path))
    assert config.checkpoint_dirs() == [config.repo_checkpoint_dir(), tmp_path]


def test_pick_device_rejects_unknown_names() -> None:
    assert config.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="Invalid device 'tpu'"):
        config.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.pick_device("cuda")
