"""One training loop for every autoencoder family, with progress events and a stop request.

Losses are per-sample means over a whole split: each image's MSE averaged over its pixels, then
averaged over the images of the split, so batch size and a short last batch do not bias them.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from paintae import config as settings
from paintae.noise import NOISE_KINDS, add_noise

logger = logging.getLogger(__name__)

TASKS = ("reconstruct", "denoise")
TrainData = torch.Tensor | Dataset


class TrainingError(RuntimeError):
    """Training stopped on an invalid loss.

    `result` contains the history up to the last good epoch.
    """

    def __init__(self, message: str, result: TrainResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class TrainConfig:
    """Every knob of a training run. Units: seconds, images, optimizer steps."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    task: str = "reconstruct"  # "denoise" feeds noisy images and targets the clean ones
    noise_kind: str = "gaussian"
    noise_level: float = 0.2
    # (low, high): training batches draw their noise level uniformly from this range, so one
    # model serves a whole noise slider. Evaluation and samples keep `noise_level`.
    noise_level_range: tuple[float, float] | None = None
    schedule: str = "constant"  # or "cosine": decays the learning rate to 0 over all steps
    seed: int = 0
    log_every: int = 20  # steps between step events; a slow step always emits one
    max_seconds: float | None = None  # stop after this much training time, at a step boundary
    sample_count: int = 8  # images in each epoch's monitor grid
    device: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        checks = [
            (1 <= self.epochs <= 10_000, f"epochs must be 1 to 10000, got {self.epochs}"),
            (1 <= self.batch_size <= 8192, f"batch size must be 1 to 8192, got {self.batch_size}"),
            (0 < self.lr <= 1.0, f"learning rate must be in (0, 1], got {self.lr}"),
            (self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}"),
            (self.noise_kind in NOISE_KINDS, f"noise must be one of {NOISE_KINDS}"),
            (0 <= self.noise_level <= 1, f"noise level must be in [0, 1], got {self.noise_level}"),
            (self.schedule in ("constant", "cosine"), f"unknown schedule {self.schedule!r}"),
            (self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}"),
            (
                self.max_seconds is None or 0 < self.max_seconds < math.inf,
                f"max_seconds must be a positive number of seconds, got {self.max_seconds}",
            ),
            (
                self.noise_level_range is None
                or 0 <= self.noise_level_range[0] <= self.noise_level_range[1] <= 1,
                f"noise level range must satisfy 0 <= low <= high <= 1, "
                f"got {self.noise_level_range}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message.capitalize() + ".")


@dataclass
class StepEvent:
    step: int  # optimizer steps done in this run, starting at 1
    total_steps: int
    epoch: int  # 1-based epoch the step belongs to
    loss: float  # per-sample mean MSE of this batch
    images_per_second: float
    elapsed: float  # seconds since the run started
    seconds_left: float


@dataclass
class EpochEvent:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    elapsed: float
    seconds_left: float
    # "clean", "input" (noisy for denoising) and "output": (K, C, H, W) CPU tensors in [0, 1].
    samples: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TrainResult:
    history: dict[str, list] = field(
        default_factory=lambda: {"epoch": [], "train_loss": [], "val_loss": [], "seconds": []}
    )
    steps: int = 0
    seconds: float = 0.0
    stopped: bool = False  # a stop request or max_seconds ended the run early
    device: str = "cpu"

    def as_metadata(self) -> dict:
        return asdict(self)


EventHandler = Callable[[StepEvent | EpochEvent], None]


def make_input(
    clean: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator | None = None,
    *,
    training: bool = False,
) -> torch.Tensor:
    """Return the model input for a clean batch: itself, or a noisy copy for denoising.

    With `training` and a `noise_level_range`, each image draws its own level from that range,
    so every batch mixes light and heavy noise and each gradient step covers the whole range.
    """
    if config.task != "denoise":
        return clean
    if not (training and config.noise_level_range is not None):
        return add_noise(clean, config.noise_kind, config.noise_level, generator=generator)
    low, high = config.noise_level_range
    levels = low + (high - low) * torch.rand(len(clean), generator=generator, dtype=torch.float64)
    return torch.cat(
        [
            add_noise(image.unsqueeze(0), config.noise_kind, float(level), generator=generator)
            for image, level in zip(clean, levels, strict=True)
        ]
    )


def evaluate_loss(
    model: nn.Module,
    data: TrainData,
    config: TrainConfig,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> float:
    """Return the per-sample mean MSE of `model` over a whole split, in eval mode.

    Denoising inputs use a fixed noise seed, so repeated evaluations agree.
    """
    device = device or next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed + 7919)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode():
            for clean in _batches(data, batch_size, shuffle=False):
                inputs = make_input(clean, config, generator).to(device)
                output = model(inputs)
                per_sample = (output - clean.to(device)).pow(2).flatten(1).mean(1)  # (B,)
                total += per_sample.sum().item()
                count += clean.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("The evaluation split is empty.")
    return total / count


def train(
    model: nn.Module,
    train_data: TrainData,
    val_data: TrainData | None,
    config: TrainConfig,
    *,
    on_event: EventHandler | None = None,
    stop: threading.Event | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    result: TrainResult | None = None,
) -> TrainResult:
    """Train `model` in place with Adam on MSE and return its history.

    `train_data` is an image tensor (N, C, H, W), batched in memory with a fresh permutation each
    epoch, or a Dataset of (C, H, W) images. Passing the `optimizer` and `result` of an earlier run
    resumes it: epochs are numbered on and the history grows. A set `stop` event ends the run after
    the current step. Raises TrainingError on a NaN or infinite loss, after restoring the weights
    of the last finished epoch.
    """
    config.validate()
    device = settings.pick_device(config.device)
    model.to(device).train()
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=config.lr)
    result = result or TrainResult()
    # A resumed run continues with other shuffles and noise than the epochs it follows.
    seed = config.seed + len(result.history["epoch"])
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    result.device = str(device)
    stop = stop or threading.Event()

    steps_per_epoch = _steps_per_epoch(train_data, config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = None
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    monitor = _monitor_batch(val_data if val_data is not None else train_data, config)
    first_epoch = len(result.history["epoch"]) + 1
    good_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    last_event = started
    step = 0
    logger.info("Training %s for %d epochs on %s", type(model).__name__, config.epochs, device)

    for epoch in range(first_epoch, first_epoch + config.epochs):
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)  # crop datasets draw new crops each epoch
        loss_sum, seen = 0.0, 0
        window_images, window_start = 0, time.perf_counter()
        for clean in _batches(train_data, config.batch_size, shuffle=True, generator=generator):
            inputs = make_input(clean, config, generator, training=True).to(
                device, non_blocking=True
            )
            target = clean.to(device, non_blocking=True)
            loss = nn.functional.mse_loss(model(inputs), target)
            if not math.isfinite(loss.item()):
                model.load_state_dict(good_state)
                result.seconds += time.perf_counter() - started
                raise TrainingError(
                    f"The loss became {loss.item()} at epoch {epoch}, step {step + 1}; the weights "
                    "were restored to the last finished epoch. Lower the learning rate and resume.",
                    result,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_sum += loss.item() * clean.shape[0]
            seen += clean.shape[0]
            window_images += clean.shape[0]

            now = time.perf_counter()
            if on_event and (step % config.log_every == 0 or step == 1 or now - last_event > 1.0):
                rate = window_images / max(now - window_start, 1e-9)
                elapsed = now - started
                on_event(
                    StepEvent(
                        step,
                        total_steps,
                        epoch,
                        loss.item(),
                        rate,
                        elapsed,
                        elapsed / step * (total_steps - step),
                    )
                )
                last_event, window_images, window_start = now, 0, now
            if stop.is_set() or (config.max_seconds and now - started >= config.max_seconds):
                result.stopped = True
                break

        if seen == 0:
            break
        val_loss = None
        if val_data is not None:
            val_loss = evaluate_loss(model, val_data, config, device=device)
        if not math.isfinite(loss_sum) or (val_loss is not None and not math.isfinite(val_loss)):
            model.load_state_dict(good_state)
            raise TrainingError(
                f"The loss became invalid in epoch {epoch}; weights restored.", result
            )
        good_state = copy.deepcopy(model.state_dict())
        elapsed = time.perf_counter() - started
        history = result.history
        history["epoch"].append(epoch)
        history["train_loss"].append(loss_sum / seen)
        history["val_loss"].append(val_loss)
        history["seconds"].append(result.seconds + elapsed)
        if on_event:
            done = epoch - first_epoch + 1
            on_event(
                EpochEvent(
                    epoch,
                    first_epoch + config.epochs - 1,
                    loss_sum / seen,
                    val_loss,
                    elapsed,
                    elapsed / done * (config.epochs - done),
                    _samples(model, monitor, config, device),
                )
            )
        if result.stopped:
            break

    result.steps += step
    result.seconds += time.perf_counter() - started
    model.eval()
    return result


def _steps_per_epoch(data: TrainData, batch_size: int) -> int:
    return max(1, math.ceil(len(data) / batch_size))


def _batches(
    data: TrainData,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
):
    """Yield CPU image batches (B, C, H, W) from a tensor or a Dataset."""
    if isinstance(data, torch.Tensor):
        order = torch.randperm(len(data), generator=generator) if shuffle else None
        for start in range(0, len(data), batch_size):
            if order is None:
                yield data[start : start + batch_size]
            else:
                yield data[order[start : start + batch_size]]
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
    for batch in loader:
        yield batch[0] if isinstance(batch, list | tuple) else batch


def _monitor_batch(data: TrainData, config: TrainConfig) -> torch.Tensor:
    count = min(config.sample_count, len(data))
    if isinstance(data, torch.Tensor):
        return data[:count].clone()
    return torch.stack([_first(data[i]) for i in range(count)])


def _first(item: torch.Tensor | tuple) -> torch.Tensor:
    return item[0] if isinstance(item, list | tuple) else item


def _samples(
    model: nn.Module, clean: torch.Tensor, config: TrainConfig, device: torch.device
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(config.seed + 104729)
    inputs = make_input(clean, config, generator)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        output = model(inputs.to(device)).cpu()
    model.train(was_training)
    return {"clean": clean, "input": inputs, "output": output}
