"""Run every page of the Streamlit app with AppTest, with and without data and checkpoints."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from paintae import checkpoints, config, data
from paintae.models import build_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120  # seconds per script run; the first run imports torch and scikit-image


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format torchvision reads (magic 0x08, then sizes)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path) -> None:
    """Write a tiny fake Fashion-MNIST (100 train, 20 test images of smooth blobs)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 100), ("t10k", 20)):
        yy, xx = np.mgrid[:28, :28]
        centres = rng.uniform(8, 20, size=(count, 2))
        images = np.exp(
            -((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 40.0
        )
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images * 255)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count))


def make_paintings(root: Path) -> None:
    """Write paintings/calm (8 smooth images) and paintings/wild (4 noisy images), 40 x 36."""
    rng = np.random.default_rng(1)
    for name, count, noise in (("calm", 8, 10), ("wild", 4, 120)):
        folder = root / "paintings" / name
        folder.mkdir(parents=True)
        for index in range(count):
            base = np.full((36, 40, 3), (120 + 10 * index, 90, 60), dtype=np.float64)
            pixels = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{index}.png")


def save_tiny(folder: Path, name: str, model_name: str, metadata: dict, **build: int) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, **build)
    checkpoints.save_checkpoint(folder / f"{name}.safetensors", model, metadata)


def make_checkpoints(folder: Path, data_root: Path) -> None:
    """Save untrained but real checkpoints of each family with runs-like metadata."""
    save_tiny(
        folder,
        "tiny-denoiser",
        "conv-ref",
        {
            "family": "denoising",
            "data": {"dataset": "fashion-mnist", "image_size": 28},
            "test_metrics": {"test_mse": 0.01, "psnr_denoised": 20.0},
        },
        in_channels=1,
        image_size=28,
        latent=4,
    )
    save_tiny(
        folder,
        "tiny-anomaly",
        "conv-ref",
        {
            "family": "anomaly",
            "data": {
                "dataset": "paintings",
                "folder": str(data_root / "paintings" / "calm"),
                "image_size": 32,
            },
            "test_metrics": {"test_mse": 0.02},
            "anomaly": {"score": "mse", "mean": 0.01, "std": 0.005, "k": 1.0, "threshold": 0.015},
        },
        in_channels=3,
        image_size=32,
        latent=4,
    )
    for latent, test_mse in ((4, 0.05), (16, 0.03)):
        save_tiny(
            folder,
            f"tiny-mlp-l{latent}",
            "mlp",
            {
                "family": "reconstruction",
                "data": {"dataset": "fashion-mnist", "image_size": 28},
                "test_metrics": {"test_mse": test_mse},
            },
            in_channels=1,
            image_size=28,
            latent=latent,
        )


@pytest.fixture
def empty_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data root, no checkpoints anywhere (shipped ones hidden), home in tmp_path."""
    monkeypatch.delenv("PAINTAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAINTAE_CHECKPOINTS", str(tmp_path / "user-checkpoints"))
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path / "repo")
    return tmp_path


@pytest.fixture
def full_env(empty_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with fake Fashion-MNIST and two painting folders, plus tiny checkpoints."""
    root = empty_env / "data"
    make_fashion_mnist(root)
    make_paintings(root)
    make_checkpoints(empty_env / "user-checkpoints", root)
    monkeypatch.setenv("PAINTAE_DATA", str(root))
    data.clear_caches()
    yield root
    data.clear_caches()


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    matches = [m.value for m in at.metric if m.label == label]
    assert matches, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return matches[0]


def table_with(at: AppTest, column: str):
    """Return the first dataframe that has `column` (AppTest does not expose dataframe keys)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with column {column!r}")


def rerun_until(at: AppTest, done: Callable[[AppTest], bool], seconds: float = 90) -> AppTest:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done(at):
            return at
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {seconds} s")


PAGES = ["pages/train.py", "pages/denoise.py", "pages/anomaly.py", "pages/benchmarks.py"]


def test_home_without_data_says_next_step(empty_env: Path) -> None:
    at = open_page()
    assert metric(at, "Fashion-MNIST") == "missing"
    assert metric(at, "Data root") == "not set"
    infos = " ".join(i.value for i in at.info)
    assert "Set PAINTAE_DATA" in infos
    assert "No checkpoints yet" in infos


def test_home_lists_data_and_checkpoints(full_env: Path) -> None:
    at = open_page()
    assert metric(at, "Fashion-MNIST") == "found"
    assert metric(at, "Painting folders") == "2"
    assert metric(at, "Checkpoints") == "4"
    names = table_with(at, "family")["name"].tolist()
    assert names == ["tiny-anomaly", "tiny-denoiser", "tiny-mlp-l16", "tiny-mlp-l4"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_data(empty_env: Path, page: str) -> None:
    at = open_page(page)
    assert not at.error
    assert at.info, "an empty page should say what to do next"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_data(full_env: Path, page: str) -> None:
    at = open_page(page)
    assert not at.error, [e.value for e in at.error]


def test_denoise_noise_slider_changes_psnr(full_env: Path) -> None:
    at = open_page("pages/denoise.py")
    assert at.radio(key="denoise_source").value == "Fashion-MNIST test image"
    assert metric(at, "PSNR denoised (dB)")  # the tiny denoiser was picked
    before = metric(at, "PSNR noisy (dB)")
    at.slider(key="denoise_level").set_value(0.5).run()
    after = metric(at, "PSNR noisy (dB)")
    assert float(after) < float(before)
    at.button(key="denoise_redraw").click().run()
    assert at.number_input(key="denoise_seed").value == 1
    assert at.get("download_button")


def test_denoise_latent_slider_switches_checkpoint(full_env: Path) -> None:
    at = open_page("pages/denoise.py")
    first = metric(at, "Reconstruction MSE")
    at.select_slider(key="denoise_latent_mlp").set_value(4).run()
    assert not at.exception
    assert metric(at, "Reconstruction MSE") != first


def test_denoise_baselines_table(full_env: Path) -> None:
    at = open_page("pages/denoise.py")
    at.checkbox(key="denoise_baselines").check().run()
    table = table_with(at, "method")
    assert table["method"].tolist() == ["model (tiny-denoiser)", "gaussian", "median", "nl_means"]


def test_denoise_upload_skips_corrupt_file(full_env: Path) -> None:
    at = open_page("pages/denoise.py")
    at.radio(key="denoise_source").set_value("Upload").run()
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (200, 100, 50)).save(buffer, format="PNG")
    at.file_uploader(key="denoise_upload").set_value(
        [("broken.png", b"not an image", "image/png"), ("good.png", buffer.getvalue(), "image/png")]
    ).run()
    assert not at.exception
    assert "broken.png" in at.warning[0].value
    assert metric(at, "PSNR noisy (dB)")


def test_anomaly_ranks_labelled_folder(full_env: Path) -> None:
    at = open_page("pages/anomaly.py")
    assert at.selectbox(key="anomaly_folder").options[0] == "paintings (12 images)"
    assert not at.metric  # nothing is scored before the button is pressed
    at.button(key="anomaly_score_folder").click().run()
    assert metric(at, "Paintings scored") == "12"
    assert at.selectbox(key="anomaly_normal").value == "calm"
    assert float(metric(at, "AUROC")) > 0.5  # noisy "wild" paintings reconstruct worse
    assert metric(at, "Threshold") == "0.015000"
    at.slider(key="anomaly_k").set_value(3.0).run()
    assert metric(at, "Threshold") == "0.025000"
    at.button(key="anomaly_reset").click().run()
    assert metric(at, "Threshold") == "0.015000"
    ranking = table_with(at, "rank")
    assert ranking["rank"].tolist() == list(range(1, 13))


def test_anomaly_rejects_folder_outside_root(full_env: Path) -> None:
    at = open_page("pages/anomaly.py")
    at.selectbox(key="anomaly_folder").set_value("Other folder ...").run()
    at.text_input(key="anomaly_folder_path").input("../").run()
    assert not at.exception
    message = at.error[0].value
    assert "outside the data root" in message
    assert str(full_env) in message


def test_train_job_shows_loss_and_saves(full_env: Path) -> None:
    at = open_page("pages/train.py")
    at.radio(key="train_dataset").set_value("Painting folder").run()
    at.selectbox(key="train_folder").select_index(0).run()
    at.select_slider(key="train_size_mlp").set_value(16).run()
    at.number_input(key="train_epochs").set_value(1).run()
    at.select_slider(key="train_batch_paintings").set_value(8).run()
    at.button(key="train_start").click().run()
    assert not at.error, [e.value for e in at.error]
    rerun_until(at, lambda a: metric(a, "Last loss") != "-")
    rerun_until(at, lambda a: metric(a, "Status") == "finished")
    assert metric(at, "Test MSE")
    name_key = next(w.key for w in at.text_input if w.key.startswith("train_save_name"))
    at.text_input(key=name_key).input("from-the-app").run()
    at.button(key="train_save").click().run()
    assert "Saved" in at.success[0].value
    saved = full_env.parent / "user-checkpoints" / "from-the-app.safetensors"
    assert saved.is_file()
    at.button(key="train_save").click().run()
    assert "already exists" in at.error[0].value


def test_train_rejects_upload_without_files(full_env: Path) -> None:
    at = open_page("pages/train.py")
    at.radio(key="train_dataset").set_value("Uploaded paintings").run()
    at.button(key="train_start").click().run()
    assert "No paintings uploaded" in at.error[0].value
