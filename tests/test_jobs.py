"""Tests for background training jobs: progress, stop, resume, failures, limits and saving."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintae import checkpoints, jobs
from paintae.jobs import JobLimitError, JobRegistry, TrainingJob
from paintae.runs import RunSettings
from paintae.trainer import TrainConfig, TrainingError, TrainResult


@pytest.fixture
def painting_folder(tmp_path: Path) -> Path:
    """Return a flat folder of eight random 24 x 20 RGB paintings."""
    folder = tmp_path / "paintings"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        pixels = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{index}.png")
    return folder


@pytest.fixture(autouse=True)
def user_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "checkpoints"
    monkeypatch.setenv("PAINTAE_CHECKPOINTS", str(folder))
    return folder


def tiny_settings(folder: Path, epochs: int = 1, **train: object) -> RunSettings:
    return RunSettings(
        family="reconstruction",
        model="mlp",
        dataset="paintings",
        painting_folder=str(folder),
        image_size=8,
        latent=4,
        train=TrainConfig(epochs=epochs, batch_size=2, log_every=1, **train),
    )


def finished(job: TrainingJob, timeout: float = 60.0) -> jobs.JobSnapshot:
    assert job.join(timeout), f"job {job.job_id} did not end within {timeout} s"
    return job.snapshot()


def test_job_trains_and_reports_progress(painting_folder: Path) -> None:
    job = TrainingJob(tiny_settings(painting_folder, epochs=2))
    started = time.perf_counter()
    job.start()
    assert time.perf_counter() - started < 1.0  # data is prepared in the worker thread
    snapshot = finished(job)
    assert snapshot.status == jobs.FINISHED
    assert snapshot.error is None
    assert len(snapshot.step_losses) == 6  # 6 training paintings in batches of 2, 2 epochs
    assert [epoch["epoch"] for epoch in snapshot.epochs] == [1, 2]
    assert [epoch["step"] for epoch in snapshot.epochs] == [3, 6]
    assert set(snapshot.samples) == {"clean", "input", "output"}
    assert "test_mse" in snapshot.test_metrics
    assert snapshot.can_save


def test_job_stops_within_one_step(painting_folder: Path) -> None:
    job = TrainingJob(tiny_settings(painting_folder, epochs=5000))
    job.start()
    deadline = time.monotonic() + 30
    while not job.snapshot().step_losses and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    step_at_stop = job.snapshot().step_losses[-1][0]
    snapshot = finished(job)
    assert snapshot.status == jobs.STOPPED
    assert snapshot.step_losses[-1][0] <= step_at_stop + 1
    assert snapshot.can_save  # a stopped job is evaluated and can be saved


def test_job_resume_continues_history(painting_folder: Path) -> None:
    job = TrainingJob(tiny_settings(painting_folder))
    job.start()
    first = finished(job)
    job.resume(2)
    resumed = finished(job)
    assert resumed.status == jobs.FINISHED
    assert [epoch["epoch"] for epoch in resumed.epochs] == [1, 2, 3]
    steps = [step for step, _ in resumed.step_losses]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) == 3 * len(first.step_losses)
    assert resumed.metadata["history"]["epoch"] == [1, 2, 3]


def test_job_resume_rejected_while_running(painting_folder: Path) -> None:
    job = TrainingJob(tiny_settings(painting_folder, epochs=5000))
    job.start()
    with pytest.raises(RuntimeError, match="still"):
        job.resume(1)
    job.stop()
    finished(job)


def test_job_missing_folder_fails_with_message(tmp_path: Path) -> None:
    job = TrainingJob(tiny_settings(tmp_path / "missing"))
    job.start()
    snapshot = finished(job)
    assert snapshot.status == jobs.FAILED
    assert str(tmp_path / "missing") in snapshot.error
    assert not snapshot.can_resume
    assert not snapshot.can_save


def test_job_invalid_loss_fails_with_message(
    painting_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def diverge(*args: object, **kwargs: object) -> TrainResult:
        raise TrainingError("The loss became nan at epoch 1, step 3.", TrainResult())

    monkeypatch.setattr(jobs, "train", diverge)
    job = TrainingJob(tiny_settings(painting_folder))
    job.start()
    snapshot = finished(job)
    assert snapshot.status == jobs.FAILED
    assert "loss became nan" in snapshot.error


def test_registry_limits_running_jobs(painting_folder: Path) -> None:
    registry = JobRegistry(max_running=1)
    first = registry.submit(tiny_settings(painting_folder, epochs=5000))
    try:
        with pytest.raises(JobLimitError, match="limit is 1"):
            registry.submit(tiny_settings(painting_folder))
    finally:
        first.stop()
        finished(first)
    second = registry.submit(tiny_settings(painting_folder))
    assert finished(second).status == jobs.FINISHED


def test_job_save_refuses_overwrite(painting_folder: Path, user_checkpoints: Path) -> None:
    job = TrainingJob(tiny_settings(painting_folder))
    job.start()
    finished(job)
    path = job.save("tiny-mlp")
    assert path == user_checkpoints / "tiny-mlp.safetensors"
    with pytest.raises(FileExistsError):
        job.save("tiny-mlp")
    assert job.save("tiny-mlp", overwrite=True) == path
    model, metadata = checkpoints.load_checkpoint(path)
    assert metadata["family"] == "reconstruction"
    assert metadata["data"]["dataset"] == "paintings"
    assert model.config["latent"] == 4
    with pytest.raises(ValueError, match="Invalid checkpoint name"):
        job.save("../escape")


def test_width_setting_reaches_model(painting_folder: Path) -> None:
    from paintae.runs import prepare_run

    settings = RunSettings(
        family="denoising",
        model="unet",
        dataset="paintings",
        painting_folder=str(painting_folder),
        image_size=16,
        crop=8,
        width=8,
    )
    assert prepare_run(settings).model.config["width"] == 8


@pytest.mark.parametrize(("model", "width", "message"), [("unet", 2, "width"), ("mlp", 8, "width")])
def test_bad_width_is_named(painting_folder: Path, model: str, width: int, message: str) -> None:
    from paintae.runs import prepare_run

    settings = tiny_settings(painting_folder)
    settings.model, settings.width = model, width
    if model == "unet":
        settings.family = "denoising"
    with pytest.raises(ValueError, match=message):
        prepare_run(settings)


def test_anomaly_run_needs_two_training_paintings(tmp_path: Path) -> None:
    from paintae.runs import prepare_run

    folder = tmp_path / "two"
    folder.mkdir()
    for index in range(2):
        Image.new("RGB", (24, 20), (index * 90, 40, 40)).save(folder / f"p{index}.png")
    settings = tiny_settings(folder)
    settings.family, settings.model = "anomaly", "conv-bottleneck"
    settings.image_size = 16
    with pytest.raises(ValueError, match="at least 2 training paintings"):
        prepare_run(settings)
