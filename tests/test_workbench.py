"""Tests for the page-level computations in paintae.workbench."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paintae import data, workbench
from paintae.models import build_model


@pytest.fixture
def root(tmp_path: Path, tmp_images: Path) -> Path:
    """Return a data root whose paintings/ folder has classes "a" and "b" (three images each)."""
    data_root = tmp_path / "root"
    data_root.mkdir()
    tmp_images.rename(data_root / "paintings")
    return data_root


def test_painting_folders_counts_classes(root: Path) -> None:
    folders = workbench.painting_folders(root, include_root=True)
    assert [f.name for f in folders] == ["paintings", "a", "b"]
    assert folders[0].count == 6
    assert folders[0].classes == {"a": 3, "b": 3}
    assert folders[1].count == 3
    assert folders[1].classes == {}
    assert [f.name for f in workbench.painting_folders(root)] == ["a", "b"]
    assert workbench.painting_folders(None) == []


def test_resolve_under_root_accepts_inside(root: Path) -> None:
    assert workbench.resolve_under_root("paintings/a", root) == (root / "paintings/a").resolve()
    absolute = str(root / "paintings" / "b")
    assert workbench.resolve_under_root(absolute, root) == Path(absolute).resolve()


def test_resolve_under_root_rejects_dotdot(root: Path) -> None:
    with pytest.raises(workbench.OutsideRootError, match="outside the data root"):
        workbench.resolve_under_root("paintings/../..", root)


def test_resolve_under_root_rejects_symlink_out(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, root / "paintings" / "link")
    with pytest.raises(workbench.OutsideRootError, match=str(outside)):
        workbench.resolve_under_root("paintings/link", root)


def test_resolve_under_root_missing_and_unset(root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        workbench.resolve_under_root("paintings/none", root)
    with pytest.raises(ValueError, match="PAINTAE_DATA"):
        workbench.resolve_under_root("paintings", None)


def test_scan_environment_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAINTAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAINTAE_CHECKPOINTS", str(tmp_path / "ck"))
    monkeypatch.setattr(workbench.config, "REPO_ROOT", tmp_path)
    env = workbench.scan_environment()
    assert env.data_root is None
    assert not env.fashion_mnist
    assert any("Set PAINTAE_DATA" in step for step in env.next_steps)
    assert any("No checkpoints" in step for step in env.next_steps)


def test_denoise_preview_psnr_drops_with_level() -> None:
    clean = torch.rand(3, 32, 40)
    weak = workbench.denoise_preview(None, clean, "gaussian", 0.05, seed=1)
    strong = workbench.denoise_preview(None, clean, "gaussian", 0.5, seed=1)
    assert weak.denoised is None
    assert weak.psnr_noisy > strong.psnr_noisy
    assert weak.ssim_noisy is not None
    assert set(weak.milliseconds) == {"noise", "metrics"}


def test_denoise_preview_with_model_and_gray_model() -> None:
    model = build_model("unet", in_channels=1, image_size=16, latent=8)
    clean, note = workbench.match_model_channels(torch.rand(3, 30, 26), 1)
    assert clean.shape == (1, 30, 26)
    assert "gray" in note
    preview = workbench.denoise_preview(model, clean, "salt_pepper", 0.1, seed=0)
    assert preview.denoised.shape == clean.shape
    assert preview.psnr_denoised is not None
    assert "model" in preview.milliseconds


def test_denoise_preview_rejects_bad_level() -> None:
    with pytest.raises(ValueError):
        workbench.denoise_preview(None, torch.rand(1, 8, 8), "gaussian", 2.0, seed=0)


def test_classical_baselines_return_each_method() -> None:
    clean = torch.rand(1, 24, 24)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    results = workbench.classical_baselines(clean, noisy, 0.1, ("gaussian", "median"))
    assert [r.method for r in results] == ["gaussian", "median"]
    assert all(r.image.shape == clean.shape for r in results)


def test_reconstruct_resizes_for_mlp() -> None:
    model = build_model("mlp", in_channels=1, image_size=28, latent=8)
    result = workbench.reconstruct(model, torch.rand(3, 50, 40))
    assert result.output.shape == (1, 50, 40)
    assert result.mse > 0


def test_heat_map_colours_errors() -> None:
    error = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    coloured = workbench.heat_map(error, vmax=1.0)
    assert coloured.shape == (10, 10, 3)
    assert coloured.dtype == np.uint8
    assert tuple(coloured[0, 0]) == (0, 0, 4)
    assert tuple(coloured[-1, -1]) == (252, 255, 164)


def test_sample_rows_skip_identical_input() -> None:
    clean = torch.rand(4, 1, 28, 28)
    rows = workbench.sample_rows({"clean": clean, "input": clean, "output": clean})
    assert [label for label, _ in rows] == ["clean", "output"]
    assert rows[0][1].dtype == np.uint8


def test_score_paintings_rejects_nan_scores(tmp_images: Path) -> None:
    paintings = data.load_painting_folder(tmp_images)
    model = build_model("conv-ref", in_channels=3, image_size=16, latent=4)
    with torch.no_grad():
        model.decoder[-1].weight.fill_(float("nan"))
    metadata = {"data": {"image_size": 16}}
    with pytest.raises(ValueError, match="NaN or infinite scores for 6 of 6"):
        workbench.score_paintings(model, metadata, paintings)


def test_score_paintings_labels_and_report(tmp_images: Path) -> None:
    paintings = data.load_painting_folder(tmp_images)
    model = build_model("conv-ref", in_channels=3, image_size=16, latent=4)
    metadata = {"data": {"image_size": 16, "folder": "/somewhere/a"}}
    run = workbench.score_paintings(model, metadata, paintings, folder=tmp_images.resolve())
    assert run.images.shape == (6, 16, 16, 3)
    assert run.images.dtype == np.uint8
    assert run.names[0] == "a/a0.png"
    assert run.scores.shape == (6,)
    assert len(run.error_maps) == 6
    assert workbench.normal_class_of(metadata) == "a"
    labels = workbench.binary_labels(run, "a")
    assert labels == [0, 0, 0, 1, 1, 1]
    report = workbench.detection_report(run.scores, labels, float(np.median(run.scores)), 50)
    assert 0.0 <= report.auroc <= 1.0
    assert report.report["tp"] + report.report["fn"] == 3
    assert set(report.confusion) == {"anomaly", "normal"}


def test_default_threshold_uses_k() -> None:
    metadata = {"anomaly": {"mean": 0.01, "std": 0.002, "k": 1.0}}
    assert workbench.default_threshold(metadata) == pytest.approx(0.012)
    assert workbench.default_threshold(metadata, k=2.5) == pytest.approx(0.015)
    assert workbench.default_threshold({}) is None


def test_loss_figure_has_step_and_epoch_traces() -> None:
    epochs = [{"epoch": 1, "step": 2, "train_loss": 0.1, "val_loss": 0.12}]
    figure = workbench.loss_figure([(1, 0.2), (2, 0.1)], epochs)
    assert [trace.name for trace in figure.data] == [
        "training loss (batch)",
        "train loss (epoch)",
        "validation loss (epoch)",
    ]


def test_benchmark_rows_flatten_records() -> None:
    rows = workbench.benchmark_rows({"score": {"seconds": 1.5, "device": {"kind": "cpu"}}})
    assert rows == [{"name": "score", "seconds": 1.5, "device.kind": "cpu"}]
    assert workbench.benchmark_rows([{"a": 1}]) == [{"a": 1}]
    assert workbench.benchmark_rows("text") == []


def test_png_bytes_round_trip() -> None:
    image = torch.rand(3, 10, 12)
    blob = workbench.png_bytes(image)
    with Image.open(io.BytesIO(blob)) as decoded:
        assert decoded.size == (12, 10)
