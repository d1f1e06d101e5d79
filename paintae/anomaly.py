"""Anomaly scores from reconstruction error: per-image scores, error maps, thresholds, ranking.

An autoencoder trained on normal images reconstructs them well and anomalies badly, so the
reconstruction error of an image is its anomaly score (higher means more anomalous).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import nn

from paintae.config import model_device
from paintae.metrics import ssim_map

logger = logging.getLogger(__name__)

# "mse": mean over C, H, W of the squared error. It is the default and the reference method.
# "ssim": 1 - SSIM, so structural damage counts more than a uniform brightness shift.
# "blur-mse": MSE after a Gaussian blur of input and reconstruction, which ignores the fine
# texture that small autoencoders never reproduce.
# "combined": 1 - SSIM joined with the distance from the image's encoder statistics to the
# nearest normal training images (see combined_statistics). The checkpoint stores those
# reference features.
SCORE_KINDS = ("mse", "ssim", "blur-mse", "combined")
# The combined score is a weighted sum of the z-scores of log(1 - SSIM) and log(feature
# distance). The weight was chosen on one Munch split and checked on two others.
COMBINED_WEIGHT = 0.25
COMBINED_NEIGHBOURS = 3
# Bounds on the normal images behind a combined score; checkpoints check the same bounds.
MIN_REFERENCE_IMAGES = 3
MAX_REFERENCE_IMAGES = 100_000
THRESHOLD_METHODS = ("mean_std", "percentile")

ProgressCallback = Callable[[int, int], None]


@dataclass
class AnomalyScores:
    """Scores (N,) float64 in input order, and per-image error maps (H, W) float32.

    Each error map is averaged over channels: 1 - local SSIM for the "ssim" and "combined"
    kinds, the squared error for the others. The list is empty when scoring ran with
    keep_maps=False.
    """

    scores: np.ndarray
    error_maps: list[np.ndarray]
    kind: str = "mse"
    # (N, D) encoder feature statistics when scoring ran with keep_features=True or "combined".
    features: np.ndarray | None = None


@dataclass
class RankedItem:
    """One row of a ranking: rank 1 is the highest score."""

    rank: int
    name: str
    score: float
    flagged: bool
    label: int | None = None


def _image_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}.")
        return list(images)
    image_list = list(images)
    for index, image in enumerate(image_list):
        if image.ndim != 3:
            raise ValueError(f"Image {index} must have shape (C, H, W), got {tuple(image.shape)}.")
    return image_list


def _blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1
    # Reflect padding needs a kernel radius smaller than the shorter image side.
    kernel = min(kernel, 2 * min(batch.shape[-2:]) - 1)
    return TF.gaussian_blur(batch, [kernel, kernel], [sigma, sigma])


def _score_batch(
    model: nn.Module, batch: torch.Tensor, kind: str, blur_sigma: float, ssim_sigma: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-image scores (B,) and channel-mean squared error maps (B, H, W)."""
    reconstruction = model(batch)
    if reconstruction.shape != batch.shape:
        raise ValueError(
            f"The model returned shape {tuple(reconstruction.shape)} for input "
            f"{tuple(batch.shape)}. Scoring needs a reconstruction of the input's shape."
        )
    reconstruction = reconstruction.float()
    squared_error = (reconstruction - batch) ** 2  # (B, C, H, W)
    if kind in ("ssim", "combined"):
        # The map shows local structural damage, the quantity the score averages.
        dissimilarity = 1.0 - ssim_map(reconstruction.clamp(0, 1), batch, sigma=ssim_sigma)
        return dissimilarity.mean(dim=(1, 2, 3)), dissimilarity.mean(dim=1)
    if kind == "mse":
        scores = squared_error.mean(dim=(1, 2, 3))
    else:
        blurred_error = (_blur(reconstruction, blur_sigma) - _blur(batch, blur_sigma)) ** 2
        scores = blurred_error.mean(dim=(1, 2, 3))
    return scores, squared_error.mean(dim=1)


def _summary(activation: torch.Tensor) -> torch.Tensor:
    """Return the channel means and standard deviations of a (B, C, H, W) map, or (B, D) as is."""
    if activation.ndim == 4:
        flat = activation.float().flatten(2)
        return torch.cat([flat.mean(dim=2), flat.std(dim=2, correction=0)], dim=1)
    return activation.float().flatten(1)


def encoder_features(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Return (B, D) statistics of the activations inside model.encode and of its output.

    Each activation layer (ReLU or LeakyReLU) the encoder passes through, and the code itself,
    adds the mean and standard deviation of every channel over the image. The statistics describe
    colour and texture in the trained encoder's terms, and they do not depend on the image size.
    """
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        captured.append(_summary(output))

    hooks = [
        module.register_forward_hook(keep)
        for module in model.modules()
        if isinstance(module, nn.ReLU | nn.LeakyReLU)
    ]
    try:
        code = model.encode(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([*captured, _summary(code)], dim=1)


def _neighbour_distances(
    reference: np.ndarray, features: np.ndarray, neighbours: int, *, leave_one_out: bool = False
) -> np.ndarray:
    """Return the mean Euclidean distance to the nearest reference rows, in standardised units.

    With leave_one_out the rows of `features` are the reference itself and each row skips its
    own zero distance.
    """
    centre = reference.mean(axis=0)
    spread = reference.std(axis=0) + 1e-6
    ref = (reference - centre) / spread
    query = (features - centre) / spread
    squared = (query**2).sum(1)[:, None] + (ref**2).sum(1)[None, :] - 2.0 * query @ ref.T
    distances = np.sqrt(np.maximum(squared, 0.0))
    if leave_one_out:
        np.fill_diagonal(distances, np.inf)
    count = min(neighbours, distances.shape[1] - (1 if leave_one_out else 0))
    return np.sort(distances, axis=1)[:, :count].mean(axis=1)


def _reference_features(stats: dict) -> np.ndarray:
    features = stats.get("reference_features")
    if features is None:
        raise ValueError(
            "The combined anomaly score needs the reference features of the normal training "
            "images, and this checkpoint has none. Retrain the model or use the 'ssim' score."
        )
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or not MIN_REFERENCE_IMAGES <= array.shape[0] <= MAX_REFERENCE_IMAGES:
        raise ValueError(
            f"The reference features have shape {array.shape}; expected (images, features) "
            f"with {MIN_REFERENCE_IMAGES} to {MAX_REFERENCE_IMAGES} images."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("The reference features contain NaN or inf values.")
    return array


def _safe_log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-12))


def _combine(stats: dict, ssim_errors: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Return the weighted sum of the two z-scores of log values against the normal images."""
    weight = float(stats.get("weight", COMBINED_WEIGHT))
    z_ssim = (_safe_log(ssim_errors) - stats["ssim_log_mean"]) / stats["ssim_log_std"]
    z_latent = (_safe_log(distances) - stats["latent_log_mean"]) / stats["latent_log_std"]
    return (1.0 - weight) * z_ssim + weight * z_latent


def combined_scores(stats: dict, ssim_errors: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Return combined scores of images from their 1 - SSIM errors and encoder features."""
    reference = _reference_features(stats)
    if features.shape[1] != reference.shape[1]:
        raise ValueError(
            f"This model gives {features.shape[1]} encoder features per image, but the "
            f"checkpoint's reference has {reference.shape[1]}; the two do not belong together."
        )
    neighbours = int(stats.get("neighbours", COMBINED_NEIGHBOURS))
    distances = _neighbour_distances(reference, features, neighbours)
    return _combine(stats, ssim_errors, distances)


def combined_statistics(
    ssim_errors: np.ndarray | Sequence[float],
    features: np.ndarray,
    *,
    k: float = 1.0,
    ssim_sigma: float = 3.0,
    weight: float = COMBINED_WEIGHT,
    neighbours: int = COMBINED_NEIGHBOURS,
) -> dict:
    """Compute the statistics of the combined score over the normal training images.

    The features of the normal images become the reference set (kept under
    "reference_features"; save_checkpoint stores them as a tensor). Each normal image's own
    distance skips itself, so its score is what an unseen painting of the same kind would get.
    The threshold is mean + k * std (ddof=1) of the normal combined scores.
    """
    errors = np.asarray(ssim_errors, dtype=np.float64).reshape(-1)
    reference = np.asarray(features, dtype=np.float64)
    if errors.size < MIN_REFERENCE_IMAGES or reference.shape[0] != errors.size:
        raise ValueError(
            f"Need at least {MIN_REFERENCE_IMAGES} normal images with one feature row each, got "
            f"{errors.size} errors and {reference.shape[0]} feature rows."
        )
    if np.any(errors <= 0):
        raise ValueError("The combined score needs positive 1 - SSIM errors.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The combined weight must be in [0, 1], got {weight}.")
    distances = _neighbour_distances(reference, reference, neighbours, leave_one_out=True)
    log_errors, log_distances = np.log(errors), _safe_log(distances)
    stats: dict = {
        "score": "combined",
        "space": "linear",
        "ssim_sigma": float(ssim_sigma),
        "weight": float(weight),
        "neighbours": int(neighbours),
        "normal_count": int(errors.size),
        "ssim_log_mean": float(log_errors.mean()),
        "ssim_log_std": float(max(log_errors.std(ddof=1), 1e-12)),
        "latent_log_mean": float(log_distances.mean()),
        "latent_log_std": float(max(log_distances.std(ddof=1), 1e-12)),
        "k": float(k),
    }
    combined = _combine(stats, errors, distances)
    stats["mean"] = float(combined.mean())
    stats["std"] = float(combined.std(ddof=1))
    stats["threshold"] = threshold_from_statistics(stats)
    stats["reference_features"] = torch.from_numpy(reference.astype(np.float32))
    return stats


def _check_options(score: str, blur_sigma: float) -> None:
    if score not in SCORE_KINDS:
        raise ValueError(f"Unknown score kind {score!r}. Use one of {', '.join(SCORE_KINDS)}.")
    if blur_sigma <= 0:
        raise ValueError(f"blur_sigma must be positive (pixels), got {blur_sigma}.")


def score_images(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    score: str = "mse",
    blur_sigma: float = 1.0,
    ssim_sigma: float = 1.5,
    progress: ProgressCallback | None = None,
    keep_maps: bool = True,
    keep_features: bool = False,
    reference: dict | None = None,
) -> AnomalyScores:
    """Score images by reconstruction error, batching images of the same (C, H, W) together.

    `images` is (N, C, H, W) or a list of (C, H, W) float tensors in [0, 1]. The model is put in
    eval mode (so BatchNorm uses its running statistics) and moved to `device` when one is given.
    Results keep the input order. `progress(done, total)` is called after each batch.
    The "combined" score needs `reference`: the statistics from combined_statistics.
    """
    _check_options(score, blur_sigma)
    if score == "combined":
        _reference_features(reference or {})
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    image_list = _image_list(images)
    run_device = model_device(model, device)
    model.eval()

    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(image_list):
        groups.setdefault(tuple(image.shape), []).append(index)

    total = len(image_list)
    scores = np.zeros(total, dtype=np.float64)
    maps: list[np.ndarray | None] = [None] * total
    with_features = keep_features or score == "combined"
    features: list[np.ndarray | None] = [None] * total
    done = 0
    with torch.inference_mode():
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                batch_indices = indices[start : start + batch_size]
                batch = torch.stack([image_list[i] for i in batch_indices])
                batch = batch.to(run_device, torch.float32)
                batch_scores, batch_maps = _score_batch(model, batch, score, blur_sigma, ssim_sigma)
                scores[batch_indices] = batch_scores.double().cpu().numpy()
                if with_features:
                    # NOTE: this runs the encoder a second time per batch, after the forward pass
                    # in _score_batch; sharing that pass would make combined scoring faster.
                    rows = encoder_features(model, batch).double().cpu().numpy()
                    for i, row in zip(batch_indices, rows, strict=True):
                        features[i] = row
                if keep_maps:
                    for i, error_map in zip(batch_indices, batch_maps.cpu().numpy(), strict=True):
                        maps[i] = error_map.astype(np.float32)
                done += len(batch_indices)
                if progress is not None:
                    progress(done, total)
    logger.debug("Scored %d images in %d size groups (%s).", total, len(groups), score)
    feature_array = np.stack(features) if with_features and total else None
    if score == "combined" and feature_array is not None:
        scores = combined_scores(reference or {}, scores, feature_array)
    return AnomalyScores(scores, [m for m in maps if m is not None], score, feature_array)


def score_images_loop(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    device: str | torch.device | None = None,
    score: str = "mse",
    blur_sigma: float = 1.0,
    ssim_sigma: float = 1.5,
    progress: ProgressCallback | None = None,
    keep_maps: bool = True,
    reference: dict | None = None,
) -> AnomalyScores:
    """Score images one at a time: the reference method, kept to benchmark score_images.

    Returns the same values as score_images for models in eval mode, up to float rounding.
    """
    _check_options(score, blur_sigma)
    if score == "combined":
        _reference_features(reference or {})
    image_list = _image_list(images)
    run_device = model_device(model, device)
    model.eval()
    scores = np.zeros(len(image_list), dtype=np.float64)
    maps = []
    features = []
    with torch.inference_mode():
        for index, image in enumerate(image_list):
            batch = image.unsqueeze(0).to(run_device, torch.float32)
            image_score, error_map = _score_batch(model, batch, score, blur_sigma, ssim_sigma)
            scores[index] = float(image_score[0])
            if score == "combined":
                features.append(encoder_features(model, batch)[0].double().cpu().numpy())
            if keep_maps:
                maps.append(error_map[0].cpu().numpy().astype(np.float32))
            if progress is not None:
                progress(index + 1, len(image_list))
    if score == "combined" and features:
        scores = combined_scores(reference or {}, scores, np.stack(features))
    return AnomalyScores(scores, maps, score)


def normal_statistics(
    scores: np.ndarray | Sequence[float],
    *,
    score: str = "mse",
    k: float = 1.0,
    space: str = "linear",
    ssim_sigma: float = 1.5,
) -> dict[str, float | int | str]:
    """Summarise the scores of normal images into the statistics a checkpoint stores.

    With space "log" the mean and std (ddof=1) are of log(score), which suits positive, skewed
    scores such as 1 - SSIM; with "linear" they are of the scores (ddof=0, as the reference did).
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size < 2:
        raise ValueError(f"Need at least 2 normal scores for a threshold, got {values.size}.")
    if space == "log":
        if np.any(values <= 0):
            raise ValueError("Log-space statistics need positive scores.")
        values, ddof = np.log(values), 1
    elif space == "linear":
        ddof = 0
    else:
        raise ValueError(f"Unknown statistics space {space!r}; use 'linear' or 'log'.")
    stats = {
        "score": score,
        "space": space,
        "ssim_sigma": ssim_sigma,
        "normal_count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=ddof)),
        "k": float(k),
    }
    stats["threshold"] = threshold_from_statistics(stats)
    return stats


def threshold_from_statistics(stats: dict, k: float | None = None) -> float:
    """Return the threshold mean + k * std in the statistics' space, as a score.

    `k` defaults to the stored k. In log space the threshold is exp(mean + k * std).
    """
    chosen_k = float(stats.get("k", 1.0) if k is None else k)
    value = float(stats["mean"]) + chosen_k * float(stats["std"])
    return math.exp(value) if stats.get("space") == "log" else value


def score_kwargs(stats: dict) -> dict:
    """Return the score_images settings that reproduce the scores behind `stats`."""
    options = {
        "score": stats.get("score", "mse"),
        "ssim_sigma": float(stats.get("ssim_sigma", 1.5)),
    }
    if options["score"] == "combined":
        options["reference"] = stats
    return options


def threshold_from_errors(
    errors: np.ndarray | Sequence[float],
    method: str = "mean_std",
    k: float = 1.0,
    percentile: float = 95.0,
) -> float:
    """Return an anomaly threshold from the errors of normal images.

    "mean_std" returns mean + k * std, with the population std (ddof=0). "percentile" returns
    np.percentile(errors, percentile) with linear interpolation.
    """
    error_array = np.asarray(errors, dtype=np.float64).reshape(-1)
    if error_array.size == 0:
        raise ValueError("errors is empty: score some normal images before choosing a threshold.")
    if not np.all(np.isfinite(error_array)):
        raise ValueError("errors contain NaN or inf values. Check the model's output.")
    if method == "mean_std":
        return float(error_array.mean() + k * error_array.std(ddof=0))
    if method == "percentile":
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}.")
        return float(np.percentile(error_array, percentile))
    raise ValueError(
        f"Unknown threshold method {method!r}. Use one of {', '.join(THRESHOLD_METHODS)}."
    )


def rank(
    scores: np.ndarray | Sequence[float],
    names: Sequence[str],
    threshold: float,
    labels: Sequence[int] | None = None,
) -> list[RankedItem]:
    """Rank images by score, highest first. Equal scores are ordered by name.

    An image is flagged when its score is strictly greater than `threshold`.
    """
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if score_array.size != len(names):
        raise ValueError(f"Got {score_array.size} scores for {len(names)} names.")
    if labels is not None and len(labels) != len(names):
        raise ValueError(f"Got {len(labels)} labels for {len(names)} names.")
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(score_array))]
    if bad:
        raise ValueError(f"Scores are NaN or inf for {bad[:5]}. Check the model's output.")
    order = sorted(range(len(names)), key=lambda i: (-score_array[i], names[i]))
    return [
        RankedItem(
            rank=position,
            name=names[i],
            score=float(score_array[i]),
            flagged=bool(score_array[i] > threshold),
            label=None if labels is None else int(labels[i]),
        )
        for position, i in enumerate(order, start=1)
    ]


def ranking_csv(items: Sequence[RankedItem]) -> str:
    """Return the ranking as CSV text: header rank,name,score,flagged, plus label if any is set."""
    with_label = any(item.label is not None for item in items)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["rank", "name", "score", "flagged"] + (["label"] if with_label else [])
    writer.writerow(header)
    for item in items:
        row: list[object] = [item.rank, item.name, repr(item.score), item.flagged]
        if with_label:
            row.append("" if item.label is None else item.label)
        writer.writerow(row)
    return buffer.getvalue()
