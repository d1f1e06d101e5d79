"""Denoising of single images of any size: trained models and classical scikit-image baselines.

Images are float tensors in [0, 1] of shape (C, H, W) with C = 1 (gray) or 3 (RGB).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from skimage import filters, restoration
from torch import nn

from paintae.config import model_device

logger = logging.getLogger(__name__)

CLASSICAL_METHODS = ("gaussian", "median", "nl_means")

# Fixed blur for the "gaussian" baseline, in pixels. A larger sigma removes more noise at strong
# noise levels but also more detail, so one moderate value is used for every level.
GAUSSIAN_SIGMA = 1.0

# ITU-R BT.601 luma weights, the ones Pillow uses for RGB -> "L".
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Tiles sent through the model in one forward pass.
_TILE_BATCH = 8


def _check_image(x: torch.Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"Expected one image of shape (C, H, W), got {tuple(x.shape)}.")


def _estimate_sigma(image: np.ndarray, channel_axis: int | None) -> float:
    # estimate_sigma uses wavelets from the optional PyWavelets package.
    try:
        sigma = restoration.estimate_sigma(image, average_sigmas=True, channel_axis=channel_axis)
    except ImportError as error:
        raise ImportError(
            "Estimating the noise level needs PyWavelets: run 'pip install PyWavelets', or pass "
            "noise_level explicitly."
        ) from error
    return float(sigma)


def classical_denoise(
    x: torch.Tensor, method: str, noise_level: float | None = None
) -> torch.Tensor:
    """Denoise one image with a scikit-image filter and return (C, H, W) float32 in [0, 1].

    method "gaussian": filters.gaussian with sigma GAUSSIAN_SIGMA pixels. "median": filters.median
    with a 3x3 footprint on each channel. "nl_means": restoration.denoise_nl_means (patch 5,
    search distance 6, fast mode) with h = 0.8 * sigma. There sigma is `noise_level`, the standard
    deviation of Gaussian noise on the [0, 1] scale, or is estimated with restoration.estimate_sigma
    when `noise_level` is None or 0. The other methods ignore `noise_level`.
    """
    _check_image(x)
    if method not in CLASSICAL_METHODS:
        raise ValueError(f"Unknown method {method!r}. Use one of {', '.join(CLASSICAL_METHODS)}.")
    if noise_level is not None and noise_level < 0:
        raise ValueError(f"noise_level must be >= 0 (a standard deviation), got {noise_level}.")

    array = x.detach().float().clamp(0, 1).cpu().numpy()  # (C, H, W)
    channels = array.shape[0]
    if method == "median":
        footprint = np.ones((3, 3), dtype=bool)
        result = np.stack([filters.median(channel, footprint=footprint) for channel in array])
    else:
        # scikit-image expects channels last for colour images and a 2-D array for gray ones.
        image = array[0] if channels == 1 else np.moveaxis(array, 0, -1)
        channel_axis = None if channels == 1 else -1
        if method == "gaussian":
            smoothed = filters.gaussian(image, sigma=GAUSSIAN_SIGMA, channel_axis=channel_axis)
        else:
            sigma = noise_level or _estimate_sigma(image, channel_axis)
            smoothed = restoration.denoise_nl_means(
                image,
                patch_size=5,
                patch_distance=6,
                h=0.8 * sigma,
                sigma=sigma,
                fast_mode=True,
                channel_axis=channel_axis,
            )
        result = smoothed[None] if channels == 1 else np.moveaxis(smoothed, -1, 0)
    output = torch.from_numpy(np.ascontiguousarray(result, dtype=np.float32)).clamp(0, 1)
    return output.to(x.device)


def _to_luma(x: torch.Tensor) -> torch.Tensor:
    """Return the BT.601 luma (1, H, W) of an RGB image (3, H, W)."""
    weights = torch.tensor(_LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=0, keepdim=True)


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (C, H, W) between gray and RGB: luma for RGB -> gray, repetition for gray -> RGB."""
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 3 and channels == 1:
        return _to_luma(x)
    if x.shape[0] == 1 and channels == 3:
        return x.expand(3, -1, -1)
    raise ValueError(f"Cannot convert a {x.shape[0]}-channel image to {channels} channels.")


def _run_padded(model: nn.Module, batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run the model on (B, C, H, W) padded on the bottom and right to a multiple of `multiple`."""
    height, width = batch.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        # Reflect padding needs each pad shorter than its side, so tiny images replicate instead.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        batch = F.pad(batch, (0, pad_w, 0, pad_h), mode=mode)
    output = model(batch)
    if output.shape != batch.shape:
        raise ValueError(
            f"The model returned shape {tuple(output.shape)} for input {tuple(batch.shape)}. "
            "denoising needs an output of the input's shape."
        )
    return output[..., :height, :width]


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _ramp(length: int, overlap: int, device: torch.device) -> torch.Tensor:
    """Return a 1-D blend weight that rises linearly over `overlap` pixels at both ends, > 0."""
    position = torch.arange(length, device=device, dtype=torch.float32)
    rise = (position + 1) / (overlap + 1)
    fall = (length - position) / (overlap + 1)
    return torch.minimum(torch.minimum(rise, fall), torch.ones_like(rise))


def _run_tiled(
    model: nn.Module, image: torch.Tensor, tile: int, overlap: int, multiple: int
) -> torch.Tensor:
    """Denoise (C, H, W) in overlapping tiles blended with linear-ramp weights."""
    channels, height, width = image.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    corners = [
        (top, left)
        for top in _tile_starts(height, tile, overlap)
        for left in _tile_starts(width, tile, overlap)
    ]
    weight = torch.outer(_ramp(tile_h, overlap, image.device), _ramp(tile_w, overlap, image.device))
    output = torch.zeros_like(image)
    weight_sum = torch.zeros((1, height, width), device=image.device)
    for start in range(0, len(corners), _TILE_BATCH):
        chunk = corners[start : start + _TILE_BATCH]
        tiles = torch.stack([image[:, t : t + tile_h, w : w + tile_w] for t, w in chunk])
        denoised = _run_padded(model, tiles, multiple)
        for (top, left), piece in zip(chunk, denoised, strict=True):
            output[:, top : top + tile_h, left : left + tile_w] += piece * weight
            weight_sum[:, top : top + tile_h, left : left + tile_w] += weight
    logger.debug("Denoised a %dx%d image in %d tiles.", height, width, len(corners))
    return output / weight_sum


def denoise_image(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tile: int = 256,
    overlap: int = 16,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Denoise one image (C, H, W) of any size with a model and return it in the input's shape.

    Fully convolutional models (attribute `fully_convolutional`) see the whole image when both
    sides are at most `tile`, and otherwise overlapping tiles of `tile` pixels blended with
    linear ramps over `overlap` pixels. Inputs are reflect-padded to the model's `size_multiple`
    and cropped back. Other models see the image resized to model.config["image_size"] squared,
    and the output is resized back (bilinear, antialiased). A gray image given to an RGB model is
    repeated to 3 channels. An RGB image given to a gray model is converted to luma, so that
    output is gray repeated over 3 channels. The result is float32 in [0, 1] on x's device.
    """
    _check_image(x)
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(
            f"Invalid tiling: need tile >= 1 and 0 <= overlap < tile, got tile={tile}, {overlap=}."
        )
    config = getattr(model, "config", {}) or {}
    run_device = model_device(model, device)
    model.eval()

    in_channels = x.shape[0]
    image = _match_channels(x.detach().float(), int(config.get("in_channels", in_channels)))
    image = image.to(run_device)
    height, width = image.shape[-2:]
    with torch.inference_mode():
        if getattr(model, "fully_convolutional", False):
            multiple = int(getattr(model, "size_multiple", 1))
            if height <= tile and width <= tile:
                output = _run_padded(model, image.unsqueeze(0), multiple)[0]
            else:
                output = _run_tiled(model, image, tile, overlap, multiple)
        else:
            if "image_size" not in config:
                raise ValueError(
                    "The model is not fully convolutional and has no config['image_size'], "
                    "so the input size it expects is unknown."
                )
            size = int(config["image_size"])
            small = TF.resize(image.unsqueeze(0), [size, size], antialias=True)
            restored = _run_padded(model, small, 1)
            output = TF.resize(restored, [height, width], antialias=True)[0]
    output = _match_channels(output.float().clamp(0, 1), in_channels)
    return output.contiguous().to(x.device)
