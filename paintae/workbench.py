"""Computations behind the app pages: environment scan, denoise previews, rankings, figures.

Pages read widgets and draw; everything between (noise, model calls, metrics, path checks,
plotly figures) lives here so it can be tested without Streamlit. Image tensors are float32 in
[0, 1], (C, H, W) for one image.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
import torchvision.transforms.functional as TF
from torch import nn
from torchvision.utils import make_grid

from paintae import anomaly, checkpoints, config, data, metrics
from paintae.denoise import classical_denoise, denoise_image
from paintae.images import IMAGE_SUFFIXES, load_image, to_pil, to_tensor, to_uint8
from paintae.noise import add_noise

logger = logging.getLogger(__name__)

PAINTINGS_DIR = "paintings"  # painting folders live in <data root>/paintings/<name>


# -- environment -----------------------------------------------------------------------------


@dataclass
class PaintingFolder:
    """A folder of paintings: its path, image count and class subfolders (empty when flat)."""

    name: str
    path: Path
    count: int
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class Environment:
    """Findings at start: data root, painting folders, checkpoints, and the next steps to take."""

    data_root: Path | None
    fashion_mnist: bool
    painting_folders: list[PaintingFolder]
    checkpoints: list[checkpoints.CheckpointInfo]
    next_steps: list[str]


def image_files(folder: Path) -> list[Path]:
    """Return the visible image files directly in `folder`, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def describe_folder(folder: Path) -> PaintingFolder:
    """Count the images of `folder`, per class subfolder when it has them."""
    classes = {
        sub.name: len(image_files(sub))
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and not sub.name.startswith(".") and image_files(sub)
    }
    count = sum(classes.values()) if classes else len(image_files(folder))
    return PaintingFolder(folder.name, folder, count, classes)


def painting_folders(root: Path | None, *, include_root: bool = False) -> list[PaintingFolder]:
    """Return the folders with images under <root>/paintings, each subfolder one entry.

    With `include_root`, <root>/paintings itself comes first when its subfolders are classes,
    which is the labelled set for anomaly evaluation (e.g. munch and vangogh).
    """
    if root is None:
        return []
    base = Path(root) / PAINTINGS_DIR
    if not base.is_dir():
        return []
    found = []
    if include_root:
        whole = describe_folder(base)
        if whole.classes:
            found.append(whole)
    for sub in sorted(base.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            described = describe_folder(sub)
            if described.count:
                found.append(described)
    return found


def scan_environment() -> Environment:
    """Look for the data root, Fashion-MNIST, painting folders and checkpoints."""
    root = config.data_root()
    fashion = data.fashion_mnist_available(root)
    folders = painting_folders(root)
    found = checkpoints.list_checkpoints()
    steps = []
    if root is None:
        steps.append(
            f"Set {config.DATA_ENV} to a folder with FashionMNIST/raw (the four uncompressed "
            "idx files) and paintings/<name>/ image folders, then restart the app."
        )
    else:
        if not root.is_dir():
            steps.append(f"The data root {root} does not exist: create it or fix {config.DATA_ENV}")
        if not fashion:
            steps.append(
                f"Fashion-MNIST was not found in {root / 'FashionMNIST' / 'raw'}: copy the four "
                "idx files there (train/t10k images and labels, uncompressed)."
            )
        if not folders:
            steps.append(
                f"No painting folders in {root / PAINTINGS_DIR}: add one folder of .jpg/.png "
                "files per painter, or upload paintings on the Train and Anomaly pages."
            )
    if not found:
        steps.append(
            "No checkpoints yet: train a model on the Train page and save it, or put "
            f"checkpoints in {config.repo_checkpoint_dir()}."
        )
    return Environment(root, fashion, folders, found, steps)


# -- paths under the data root ---------------------------------------------------------------


class OutsideRootError(ValueError):
    """A requested folder resolves to a place outside the configured data root."""


def resolve_under_root(text: str, root: Path | None) -> Path:
    """Resolve a folder typed by a user and check that it lies inside the data root.

    Relative paths are taken from `root`. Symbolic links and ".." are resolved first, so
    neither can lead out of the root. Raises OutsideRootError (naming the path and the root),
    ValueError when no root is set, FileNotFoundError or NotADirectoryError for a bad folder.
    """
    if root is None:
        raise ValueError(
            f"No data root is set, so no server folder can be read: set {config.DATA_ENV}."
        )
    base = Path(root).expanduser().resolve()
    typed = Path(text.strip()).expanduser()
    candidate = (typed if typed.is_absolute() else base / typed).resolve()
    if candidate != base and base not in candidate.parents:
        raise OutsideRootError(
            f"The folder {text.strip()!r} resolves to {candidate}, which is outside the data "
            f"root {base}. Choose a folder inside the data root."
        )
    if not candidate.exists():
        raise FileNotFoundError(f"The folder {candidate} does not exist.")
    if not candidate.is_dir():
        raise NotADirectoryError(f"{candidate} is a file, not a folder of images.")
    return candidate


# -- images ----------------------------------------------------------------------------------


def load_tensor(source: Path | bytes, name: str, max_side: int | None = None) -> torch.Tensor:
    """Load one image file or upload as RGB (3, H, W), downscaled to `max_side` when given.

    Raises images.ImageLoadError naming the file for corrupt, non-image or oversized input.
    """
    img = load_image(source, mode="RGB", name=name)
    tensor = to_tensor(img)
    return fit_tensor(tensor, max_side) if max_side else tensor


def fit_tensor(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """Downscale (C, H, W) so its longer side is at most `max_side` pixels (antialiased)."""
    height, width = x.shape[-2:]
    if max(height, width) <= max_side:
        return x
    scale = max_side / max(height, width)
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    return TF.resize(x, size, antialias=True).clamp(0, 1)


def match_model_channels(x: torch.Tensor, channels: int) -> tuple[torch.Tensor, str | None]:
    """Return `x` in the model's colour mode and a note when it was converted.

    A gray model is compared against the gray (BT.601 luma) version of a colour image, because
    its output has no colour. A colour model gets a gray image repeated to three channels.
    """
    if x.shape[0] == channels:
        return x, None
    if channels == 1:
        luma = TF.rgb_to_grayscale(x, num_output_channels=1)
        return luma, "The model is gray, so the colour image was converted to gray."
    return x.expand(3, -1, -1).contiguous(), "The model is colour; the gray image was repeated."


def png_bytes(x: torch.Tensor) -> bytes:
    """Encode (C, H, W) in [0, 1] as PNG bytes."""
    buffer = io.BytesIO()
    to_pil(x).save(buffer, format="PNG")
    return buffer.getvalue()


def display(x: torch.Tensor) -> np.ndarray:
    """Return (C, H, W) as an (H, W, 3) or (H, W) uint8 array for st.image."""
    array = to_uint8(x)
    return array[:, :, 0] if array.shape[2] == 1 else array


def upscale_for_display(x: torch.Tensor, min_side: int = 196) -> torch.Tensor:
    """Enlarge tiny images (e.g. 28 x 28) with nearest neighbour so pixels stay visible."""
    side = min(x.shape[-2:])
    if side >= min_side:
        return x
    factor = -(-min_side // side)
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


# Anchor colours of the "inferno" colour map, from black through purple and orange to yellow.
_HEAT_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def heat_map(error_map: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Colour an (H, W) error map as (H, W, 3) uint8, black (0) to yellow (`vmax`).

    `vmax` defaults to the 99th percentile of the map, so one hot pixel does not darken the rest.
    """
    values = np.asarray(error_map, dtype=np.float32)
    top = float(vmax if vmax is not None else np.percentile(values, 99))
    scaled = np.clip(values / top, 0.0, 1.0) if top > 0 else np.zeros_like(values)
    position = scaled * (len(_HEAT_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
    weight = (position - low)[..., None]
    colours = _HEAT_ANCHORS[low] * (1 - weight) + _HEAT_ANCHORS[low + 1] * weight
    return colours.round().astype(np.uint8)


def sample_rows(samples: dict[str, torch.Tensor]) -> list[tuple[str, np.ndarray]]:
    """Turn a training monitor batch into labelled image rows (clean, noisy input, output).

    The "input" row is left out when it equals "clean" (reconstruction training).
    """
    rows = []
    labels = {"clean": "clean", "input": "noisy input", "output": "output"}
    for key, label in labels.items():
        batch = samples.get(key)
        if batch is None or len(batch) == 0:
            continue
        if key == "input" and torch.equal(batch, samples.get("clean", torch.empty(0))):
            continue
        batch = batch.float().clamp(0, 1)
        if batch.shape[-1] < 64:
            batch = torch.nn.functional.interpolate(batch, scale_factor=3, mode="nearest")
        grid = make_grid(batch, nrow=len(batch), padding=2, pad_value=1.0)  # (C, H, W)
        rows.append((label, display(grid)))
    return rows


# -- denoising -------------------------------------------------------------------------------


@dataclass
class DenoisePreview:
    """Clean, noisy and denoised image with their quality metrics and timings in milliseconds.

    `denoised` is None when no model was given. SSIM values are None for images smaller than
    metrics.SSIM_MIN_SIDE pixels.
    """

    clean: torch.Tensor
    noisy: torch.Tensor
    denoised: torch.Tensor | None
    psnr_noisy: float
    psnr_denoised: float | None
    ssim_noisy: float | None
    ssim_denoised: float | None
    milliseconds: dict[str, float]

    @property
    def total_milliseconds(self) -> float:
        return sum(self.milliseconds.values())


def denoise_preview(
    model: nn.Module | None, clean: torch.Tensor, kind: str, level: float, seed: int
) -> DenoisePreview:
    """Add noise to `clean` (C, H, W), denoise it with `model`, and measure PSNR/SSIM vs clean.

    The same seed gives the same noise. Raises ValueError for an invalid noise kind or level, or
    an image the model cannot take.
    """
    times: dict[str, float] = {}
    started = time.perf_counter()
    noisy = add_noise(clean, kind, level, seed=seed)
    times["noise"] = _elapsed_ms(started)

    denoised = None
    if model is not None:
        started = time.perf_counter()
        denoised = denoise_image(model, noisy)
        times["model"] = _elapsed_ms(started)

    started = time.perf_counter()
    psnr_noisy = _psnr(noisy, clean)
    ssim_noisy = _ssim(noisy, clean)
    psnr_denoised = _psnr(denoised, clean) if denoised is not None else None
    ssim_denoised = _ssim(denoised, clean) if denoised is not None else None
    times["metrics"] = _elapsed_ms(started)
    return DenoisePreview(
        clean, noisy, denoised, psnr_noisy, psnr_denoised, ssim_noisy, ssim_denoised, times
    )


@dataclass
class BaselineResult:
    """One classical denoiser applied to the noisy image, with its metrics and time."""

    method: str
    image: torch.Tensor
    psnr: float
    ssim: float | None
    milliseconds: float


def classical_baselines(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    noise_level: float,
    methods: Sequence[str],
) -> list[BaselineResult]:
    """Run each classical method on `noisy` and score it against `clean`.

    NL-means gets `noise_level` as its noise standard deviation (a level of 0 makes it estimate
    the noise instead). On large colour images it takes seconds, so callers should cache results.
    """
    results = []
    for method in methods:
        started = time.perf_counter()
        output = classical_denoise(noisy, method, noise_level or None)
        results.append(
            BaselineResult(
                method, output, _psnr(output, clean), _ssim(output, clean), _elapsed_ms(started)
            )
        )
    return results


@dataclass
class Reconstruction:
    """An MLP reconstruction of one image with its error."""

    output: torch.Tensor
    mse: float
    psnr: float


def reconstruct(model: nn.Module, clean: torch.Tensor) -> Reconstruction:
    """Reconstruct (C, H, W) with a reconstruction model, resized to its input size and back."""
    channels = int(model.config.get("in_channels", clean.shape[0]))
    target, _ = match_model_channels(clean, channels)
    output = denoise_image(model, target)  # resizes for non-convolutional models
    mse = float((output - target).pow(2).mean())
    return Reconstruction(output, mse, _psnr(output, target))


def latent_checkpoints(
    infos: Sequence[checkpoints.CheckpointInfo], dataset: str = "fashion-mnist"
) -> list[checkpoints.CheckpointInfo]:
    """Return the MLP reconstruction checkpoints trained on `dataset`, sorted by latent size."""
    chosen = [
        info
        for info in infos
        if info.family == "reconstruction"
        and info.model_name in ("mlp", "mlp-deep")
        and info.metadata.get("data", {}).get("dataset") == dataset
    ]
    return sorted(chosen, key=lambda info: (info.metadata["model"].get("latent", 0), info.name))


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(metrics.psnr(pred, target)[0])


def _ssim(pred: torch.Tensor, target: torch.Tensor) -> float | None:
    if min(pred.shape[-2:]) < metrics.SSIM_MIN_SIDE:
        return None
    return float(metrics.ssim(pred, target)[0])


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


# -- anomaly ranking -------------------------------------------------------------------------


@dataclass
class AnomalyRun:
    """Scores of a set of paintings under one anomaly model.

    `images` are the inputs as the model saw them, uint8 (N, S, S, C) for display, where S is the
    checkpoint's evaluation size. `error_maps` are float32 (S, S) per image. `names` are paths
    relative to the scored folder. `class_names` and `class_index` come
    from class subfolders (class_index -1 when there are none).
    """

    names: list[str]
    images: np.ndarray
    scores: np.ndarray
    error_maps: list[np.ndarray]
    class_names: list[str]
    class_index: list[int]
    skipped: list[tuple[str, str]]
    image_size: int
    seconds: float


def scoring_size(model: nn.Module, metadata: dict) -> int:
    """Return the square size images are resized to for scoring: the checkpoint's eval size."""
    size = metadata.get("data", {}).get("image_size") or model.config.get("image_size")
    if not size:
        raise ValueError("The checkpoint records no image size, so images cannot be prepared.")
    return int(size)


def score_paintings(
    model: nn.Module,
    metadata: dict,
    paintings: data.PaintingSet,
    progress: anomaly.ProgressCallback | None = None,
    folder: Path | None = None,
) -> AnomalyRun:
    """Resize paintings like the model's evaluation (resize_square) and score them.

    The score kind (MSE, or 1 - SSIM with the stored window) is the one behind the checkpoint's
    threshold statistics, so scores and threshold are comparable.

    `progress(done, total)` is called after each scored batch.
    Raises ValueError when the model cannot take the images (e.g. a size it does not support).
    """
    size = scoring_size(model, metadata)
    started = time.perf_counter()
    inputs = data.resize_square(paintings.images, size)
    channels = int(model.config.get("in_channels", 3))
    if channels == 1:
        inputs = TF.rgb_to_grayscale(inputs, num_output_channels=1)
    try:
        options = anomaly.score_kwargs(metadata.get("anomaly") or {})
        scored = anomaly.score_images(model, inputs, progress=progress, **options)
    except RuntimeError as error:
        raise ValueError(
            f"The model could not score {size} x {size} images: {error}. Choose a checkpoint "
            "trained for this image size."
        ) from error
    broken = int(np.count_nonzero(~np.isfinite(scored.scores)))
    if broken:
        raise ValueError(
            f"The checkpoint gave NaN or infinite scores for {broken} of {len(scored.scores)} "
            "paintings, so its weights or stored statistics are broken. Choose another "
            "checkpoint or retrain this one."
        )
    names = [_relative_name(path, folder) for path in paintings.paths]
    return AnomalyRun(
        names=names,
        images=(inputs.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
        scores=scored.scores,
        error_maps=scored.error_maps,
        class_names=list(paintings.class_names),
        class_index=list(paintings.labels),
        skipped=list(paintings.skipped),
        image_size=size,
        seconds=time.perf_counter() - started,
    )


def _relative_name(path: Path, folder: Path | None) -> str:
    if folder is not None and path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return path.as_posix()


def normal_class_of(metadata: dict) -> str | None:
    """Return the class the model was trained on: the basename of its painting folder."""
    folder = metadata.get("data", {}).get("folder")
    if not folder or folder == "uploaded":
        return None
    return Path(folder).name


def binary_labels(run: AnomalyRun, normal_class: str | None) -> list[int] | None:
    """Return 0 for the normal class and 1 for every other class, or None without classes."""
    if not run.class_names or normal_class not in run.class_names:
        return None
    normal = run.class_names.index(normal_class)
    return [0 if index == normal else 1 for index in run.class_index]


def score_label(stats: dict) -> str:
    """Return a short name of the checkpoint's anomaly score for labels."""
    if stats.get("score") == "ssim":
        return f"1 - SSIM, sigma {stats.get('ssim_sigma', 1.5):g} px"
    if stats.get("score") == "combined":
        return f"combined z-score, SSIM sigma {stats.get('ssim_sigma', 1.5):g} px"
    return {"blur-mse": "MSE after blur"}.get(stats.get("score", "mse"), "MSE")


def error_map_label(stats: dict) -> str:
    """Return what the error maps of a checkpoint's score show, for captions."""
    if stats.get("score") in ("ssim", "combined"):
        return "1 - local SSIM per pixel"
    return "squared error per pixel"


def threshold_help(stats: dict) -> str:
    """Return help text that explains how the threshold follows from k."""
    if stats.get("score") == "combined":
        weight = float(stats.get("weight", anomaly.COMBINED_WEIGHT))
        return (
            f"score = {1 - weight:g} * z(log(1 - SSIM)) + {weight:g} * z(log feature distance to "
            f"the {stats.get('neighbours', 3)} nearest training paintings), each z against the "
            f"training paintings. threshold = mean + k * std of their scores (mean "
            f"{stats['mean']:.3f}, std {stats['std']:.3f})."
        )
    if stats.get("space") == "log":
        return (
            "threshold = exp(mean + k * std) of the log-scores of the training paintings "
            f"(mean {stats['mean']:.4f}, std {stats['std']:.4f})."
        )
    return (
        "threshold = mean + k * std of the training errors "
        f"(mean {stats['mean']:.6f}, std {stats['std']:.6f})."
    )


def default_threshold(metadata: dict, k: float | None = None) -> float | None:
    """Return mean + k * std of the normal training scores stored in the checkpoint.

    In log space (1 - SSIM scores) the threshold is exp(mean + k * std) of log-scores. `k`
    defaults to the checkpoint's own k. Returns None when the checkpoint has no statistics.
    """
    stats = metadata.get("anomaly") or {}
    if "mean" not in stats or "std" not in stats:
        return None
    return anomaly.threshold_from_statistics(stats, k)


@dataclass
class DetectionReport:
    """Labelled evaluation of scores at one threshold; label 1 is the anomaly."""

    auroc: float
    auroc_low: float
    auroc_high: float
    average_precision: float
    report: dict[str, float | int]
    confusion: dict[str, dict[str, int]]
    fpr: np.ndarray
    tpr: np.ndarray


def detection_report(
    scores: np.ndarray, labels: Sequence[int], threshold: float, bootstrap: int = 500
) -> DetectionReport:
    """Compute AUROC (with a bootstrap 95% interval), AP, ROC and counts at `threshold`.

    Raises ValueError when the labels hold only one class.
    """
    label_array = np.asarray(labels)
    point, low, high = metrics.bootstrap_auroc(scores, label_array, n=bootstrap, seed=0)
    fpr, tpr, _ = metrics.roc_curve(scores, label_array)
    return DetectionReport(
        auroc=point,
        auroc_low=low,
        auroc_high=high,
        average_precision=metrics.average_precision(scores, label_array),
        report=metrics.binary_report(scores, label_array, threshold),
        confusion=metrics.confusion_table(scores, label_array, threshold),
        fpr=fpr,
        tpr=tpr,
    )


# -- figures ---------------------------------------------------------------------------------


def loss_figure(step_losses: Sequence[tuple[int, float]], epochs: Sequence[dict]) -> go.Figure:
    """Plot the per-step training loss, and train/val loss per epoch at the epoch's last step."""
    figure = go.Figure()
    if step_losses:
        steps, losses = zip(*step_losses, strict=True)
        figure.add_scatter(x=steps, y=losses, mode="lines", name="training loss (batch)")
    if epochs:
        per_epoch = [e.get("step", e["epoch"]) for e in epochs]
        figure.add_scatter(
            x=per_epoch,
            y=[e["train_loss"] for e in epochs],
            mode="lines+markers",
            name="train loss (epoch)",
        )
        if any(e["val_loss"] is not None for e in epochs):
            figure.add_scatter(
                x=per_epoch,
                y=[e["val_loss"] for e in epochs],
                mode="lines+markers",
                name="validation loss (epoch)",
            )
    figure.update_layout(
        xaxis_title="step",
        yaxis_title="MSE per image",
        yaxis_type="log",
        # Full values on every tick: plotly otherwise labels minor log ticks with bare digits.
        yaxis_tickformat=".2g",
        height=340,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
    )
    return figure


def score_histogram(
    scores: np.ndarray,
    threshold: float,
    groups: dict[str, np.ndarray] | None = None,
    score_name: str = "MSE",
) -> go.Figure:
    """Histogram of anomaly scores (one trace per group) with a vertical threshold line."""
    figure = go.Figure()
    for name, values in (groups or {"paintings": scores}).items():
        figure.add_histogram(x=values, name=name, opacity=0.7, nbinsx=40)
    figure.add_vline(x=threshold, line_dash="dash", line_color="red", annotation_text="threshold")
    figure.update_layout(
        barmode="overlay",
        xaxis_title=f"anomaly score ({score_name})",
        yaxis_title="paintings",
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float) -> go.Figure:
    """ROC curve with the chance diagonal."""
    figure = go.Figure()
    figure.add_scatter(x=fpr, y=tpr, mode="lines", name=f"model (AUROC {auroc:.3f})")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line_dash="dot")
    figure.update_layout(
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def latent_figure(infos: Sequence[checkpoints.CheckpointInfo]) -> go.Figure:
    """Test MSE against latent size, one line per model name, from checkpoint metadata."""
    figure = go.Figure()
    by_model: dict[str, list[tuple[int, float]]] = {}
    for info in infos:
        test_mse = info.metadata.get("test_metrics", {}).get("test_mse")
        if test_mse is not None:
            point = (info.metadata["model"]["latent"], test_mse)
            by_model.setdefault(info.model_name, []).append(point)
    latents = sorted({p[0] for points in by_model.values() for p in points})
    for name, points in sorted(by_model.items()):
        points.sort()
        figure.add_scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name
        )
    figure.update_layout(
        xaxis={"title": "latent size", "type": "log", "tickvals": latents},
        yaxis_title="test MSE",
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


# -- benchmarks ------------------------------------------------------------------------------


def read_benchmarks(repo_root: Path | None = None) -> tuple[object | None, str | None]:
    """Return (benchmarks/results.json parsed, docs/benchmarks.md text); None for a missing one.

    Raises ValueError naming the file when results.json is not valid JSON.
    """
    root = repo_root or config.REPO_ROOT
    results_path = root / "benchmarks" / "results.json"
    page_path = root / "docs" / "benchmarks.md"
    results = None
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{results_path} is not valid JSON: {error}") from error
    page = page_path.read_text(encoding="utf-8") if page_path.is_file() else None
    return results, page


def benchmark_rows(results: object) -> list[dict]:
    """Flatten benchmark results into table rows: a list of records, or one row per key.

    Returns [] when the shape is neither, so the caller shows the raw JSON instead.
    """
    if isinstance(results, dict) and isinstance(results.get("results"), list):
        results = results["results"]
    if isinstance(results, list) and all(isinstance(item, dict) for item in results):
        return [_flat(item) for item in results]
    if isinstance(results, dict) and all(isinstance(v, dict) for v in results.values()):
        return [{"name": key, **_flat(value)} for key, value in results.items()]
    return []


def _flat(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)[:80]
        else:
            flat[name] = value
    return flat
