"""The training loop: loss goes down, events arrive, stop, resume and invalid losses."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from paintae.models import build_model
from paintae.trainer import (
    EpochEvent,
    StepEvent,
    TrainConfig,
    TrainingError,
    evaluate_loss,
    train,
)


def _images(count: int = 256, seed: int = 0) -> torch.Tensor:
    """Return smooth random 1 x 16 x 16 images, easy enough to learn in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")


def test_train_lowers_the_loss() -> None:
    data = _images()
    model = build_model("conv-ref", in_channels=1, image_size=16)
    config = TrainConfig(epochs=25, batch_size=32, lr=3e-3)
    before = evaluate_loss(model, data, config)
    result = train(model, data, data[:64], config)
    after = evaluate_loss(model, data, config)
    assert after < before * 0.5
    assert len(result.history["train_loss"]) == 25
    assert result.history["val_loss"][-1] is not None
    assert not result.stopped


def test_train_emits_step_and_epoch_events() -> None:
    events: list = []
    model = build_model("conv-ref", in_channels=1, image_size=16)
    config = TrainConfig(epochs=2, batch_size=32, log_every=2, task="denoise", noise_level=0.1)
    train(model, _images(128), _images(32, seed=1), config, on_event=events.append)
    steps = [e for e in events if isinstance(e, StepEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert steps[0].step == 1
    assert steps[-1].total_steps == 8
    assert [e.epoch for e in epochs] == [1, 2]
    assert set(epochs[-1].samples) == {"clean", "input", "output"}
    assert not torch.equal(epochs[-1].samples["clean"], epochs[-1].samples["input"])
    assert epochs[-1].samples["output"].shape == (8, 1, 16, 16)


def test_stop_request_ends_the_run_after_one_step() -> None:
    stop = threading.Event()
    steps: list[int] = []

    def on_event(event: StepEvent | EpochEvent) -> None:
        if isinstance(event, StepEvent):
            steps.append(event.step)
            stop.set()

    model = build_model("mlp", in_channels=1, image_size=16, latent=8)
    result = train(
        model, _images(), None, TrainConfig(epochs=5, batch_size=8), on_event=on_event, stop=stop
    )
    assert result.stopped
    assert result.steps == 1
    assert steps == [1]


def test_resume_continues_epoch_numbering() -> None:
    data = _images(64)
    model = build_model("mlp", in_channels=1, image_size=16, latent=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = TrainConfig(epochs=2, batch_size=16)
    first = train(model, data, None, config, optimizer=optimizer)
    second = train(model, data, None, config, optimizer=optimizer, result=first)
    assert second.history["epoch"] == [1, 2, 3, 4]
    assert second.steps == 16


def test_invalid_loss_restores_last_good_weights() -> None:
    data = _images(64)
    model = build_model("mlp", in_channels=1, image_size=16, latent=8)
    train(model, data, None, TrainConfig(epochs=1, batch_size=16))
    good = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = data.clone()
    poisoned[5] = math.nan
    with pytest.raises(TrainingError, match="loss became nan") as caught:
        train(model, poisoned, None, TrainConfig(epochs=2, batch_size=64))
    assert caught.value.result.history["epoch"] == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, good[key]), key


def test_max_seconds_stops_early() -> None:
    model = build_model("mlp", in_channels=1, image_size=16, latent=8)
    result = train(model, _images(), None, TrainConfig(epochs=1000, batch_size=8, max_seconds=0.2))
    assert result.stopped
    assert len(result.history["epoch"]) < 1000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "Epochs must be"),
        ("batch_size", 0, "Batch size must be"),
        ("lr", 0.0, "Learning rate must be"),
        ("lr", float("nan"), "Learning rate must be"),
        ("noise_level", 1.5, "Noise level must be"),
        ("task", "paint", "Task must be"),
    ],
)
def test_train_config_rejects_invalid_settings(field: str, value: object, message: str) -> None:
    config = TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_evaluate_loss_is_per_sample_mean() -> None:
    data = _images(10)
    model = build_model("mlp", in_channels=1, image_size=16, latent=8).eval()
    with torch.inference_mode():
        expected = (model(data) - data).pow(2).flatten(1).mean(1).mean().item()
    for batch_size in (1, 3, 10):
        got = evaluate_loss(model, data, TrainConfig(), batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-5)


def test_noise_level_range_varies_training_noise() -> None:
    from paintae.trainer import make_input

    clean = torch.full((4, 1, 8, 8), 0.5)
    config = TrainConfig(task="denoise", noise_level=0.2, noise_level_range=(0.0, 0.4))
    generator = torch.Generator().manual_seed(0)
    spreads = {
        round((make_input(clean, config, generator, training=True) - clean).std().item(), 3)
        for _ in range(5)
    }
    assert len(spreads) == 5
    fixed = make_input(clean, config, torch.Generator().manual_seed(0))
    assert (fixed - clean).std().item() == pytest.approx(0.2, rel=0.2)


def test_noise_level_range_draws_one_level_per_image() -> None:
    from paintae.trainer import make_input

    clean = torch.full((64, 1, 16, 16), 0.5)
    config = TrainConfig(task="denoise", noise_level_range=(0.05, 0.3))
    noisy = make_input(clean, config, torch.Generator().manual_seed(1), training=True)
    assert noisy.shape == clean.shape
    per_image = (noisy - clean).std(dim=(1, 2, 3))
    assert per_image.min() < 0.1 < 0.25 < per_image.max()
    assert ((per_image > 0.03) & (per_image < 0.33)).all()


def test_noise_level_range_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="Noise level range"):
        TrainConfig(noise_level_range=(0.3, 0.1)).validate()
