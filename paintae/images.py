"""One safe loader for image files and uploaded bytes, and conversions between PIL and tensors.

Every image that enters paintae goes through `load_image`, which rejects oversized, truncated and
non-image inputs with an `ImageLoadError` before any pixel data is decoded where that is possible.
Tensors are float32 in [0, 1] with shape (C, H, W).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from paintae.config import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
OUTPUT_MODES = ("RGB", "L")

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Errors that Pillow's decoders raise on broken files. OSError covers "image file is truncated" and
# UnidentifiedImageError; the others come from malformed headers in individual plugins.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_REEXPORT_HINT = "Re-export it as JPEG or PNG."


class ImageLoadError(ValueError):
    """An image file or upload that cannot be used; the message names it and the reason."""


def load_image(
    source: str | Path | bytes,
    *,
    mode: str = "RGB",
    name: str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Image.Image:
    """Decode an image file or uploaded bytes into a fully loaded 8-bit "RGB" or "L" image.

    `name` labels the source in error messages (default: the file name, or "upload" for bytes).
    The byte size is checked against `max_bytes` and the header's width * height against
    `max_pixels` before pixels are decoded. EXIF orientation is applied, only the first frame of
    a multi-frame GIF or TIFF is used, 16-bit grayscale is scaled (65535 -> 255), and transparent
    images are composited on white.

    Raises ImageLoadError for a missing, oversized, truncated, corrupt or non-image source, and
    ValueError for a `mode` other than "RGB" or "L".
    """
    if mode not in OUTPUT_MODES:
        raise ValueError(f"Invalid image mode {mode!r}: use one of {OUTPUT_MODES}.")
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "upload"
        data = bytes(source)
        size_in_bytes = len(data)
        stream: io.BytesIO | Path = io.BytesIO(data)
    else:
        path = Path(source)
        label = name or path.name
        try:
            size_in_bytes = path.stat().st_size
        except FileNotFoundError as error:
            raise ImageLoadError(f"Cannot read {label!r}: file not found at {path}.") from error
        if not path.is_file():
            raise ImageLoadError(f"Cannot read {label!r}: {path} is not a file.")
        stream = path

    if size_in_bytes > max_bytes:
        raise ImageLoadError(
            f"Cannot read {label!r}: the file has {size_in_bytes:,} bytes, more than the limit of "
            f"{max_bytes:,} bytes. Use a smaller or more compressed file."
        )
    if size_in_bytes == 0:
        raise ImageLoadError(f"Cannot read {label!r}: the file is empty.")

    try:
        with warnings.catch_warnings():
            # Pillow warns (instead of raising) between its own limit and twice that limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                _check_pixel_count(img, label, max_pixels)
                return _normalize(img, mode)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(
            f"Cannot read {label!r}: its header claims a decompression bomb ({error}). "
            f"Images may have at most {max_pixels:,} pixels."
        ) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"Cannot read {label!r}: it is not an image in a format Pillow reads. {_REEXPORT_HINT}"
        ) from error
    except _DECODE_ERRORS as error:
        logger.debug("Decoding %s failed: %s", label, error)
        raise ImageLoadError(
            f"Cannot read {label!r}: the file is truncated or corrupt ({error}). {_REEXPORT_HINT}"
        ) from error


def _check_pixel_count(img: Image.Image, label: str, max_pixels: int) -> None:
    """Raise ImageLoadError when the header's size exceeds `max_pixels`; decodes no pixels."""
    width, height = img.size
    pixels = width * height
    if pixels > max_pixels:
        raise ImageLoadError(
            f"Cannot read {label!r}: it has {width} x {height} = {pixels:,} pixels, more than the "
            f"limit of {max_pixels:,}. Downscale it before loading."
        )
    if pixels == 0:
        raise ImageLoadError(f"Cannot read {label!r}: it has a size of {width} x {height} pixels.")


def _normalize(img: Image.Image, mode: str) -> Image.Image:
    """Turn the first frame of an opened image into a loaded 8-bit image in `mode`."""
    img.seek(0)
    # exif_transpose decodes the pixels and returns a new image with the orientation applied.
    img = ImageOps.exif_transpose(img)
    img.load()

    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        img = _scale_to_8bit(img)
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")

    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        img = _composite_on_white(img)
    if img.mode not in OUTPUT_MODES:
        # CMYK, YCbCr, LAB, HSV and RGBX all have a Pillow conversion to RGB.
        img = img.convert("RGB")
    if img.mode != mode:
        # Pillow converts RGB to L with the ITU-R 601-2 luma transform.
        img = img.convert(mode)
    return img


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """Map a 16-bit, 32-bit integer or float grayscale image onto 0..255 without clipping."""
    values = np.asarray(img).astype(np.float64)
    if img.mode in _SIXTEEN_BIT_MODES:
        full_scale = 65535.0
    elif img.mode == "F" and values.size and float(values.max()) <= 1.0:
        full_scale = 1.0
    else:
        # Mode "I" usually contains 16-bit samples. NOTE: larger or float values are scaled by their
        # own maximum, which changes the brightness of images that do not use the full range.
        peak = float(values.max()) if values.size else 0.0
        full_scale = 65535.0 if peak <= 65535.0 else peak
    scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_tensor(img: Image.Image) -> Tensor:
    """Convert an "RGB" or "L" image to a float32 tensor (C, H, W) in [0, 1]; C is 3 or 1."""
    if img.mode not in OUTPUT_MODES:
        raise ValueError(
            f"Cannot convert an image in mode {img.mode!r}: load it with load_image() first."
        )
    return pil_to_tensor(img).to(torch.float32).div_(255.0)


def to_uint8(x: Tensor) -> np.ndarray:
    """Convert a tensor (C, H, W) or (H, W) in [0, 1] to a uint8 array (H, W, C), clamping values.

    A (H, W) tensor gives an array of shape (H, W, 1).
    """
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(
            f"Expected an image tensor of shape (C, H, W) with C in (1, 3) or (H, W), "
            f"got shape {tuple(x.shape)}."
        )
    scaled = x.detach().to("cpu", torch.float32).clamp(0.0, 1.0).mul(255.0).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def to_pil(x: Tensor) -> Image.Image:
    """Convert a tensor (C, H, W) or (H, W) in [0, 1] to an "RGB" or "L" image, clamping values."""
    array = to_uint8(x)
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGB")


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is `size` pixels, keeping the aspect ratio (Lanczos filter)."""
    if size <= 0:
        raise ValueError(f"Invalid size {size}: it must be a positive number of pixels.")
    width, height = img.size
    scale = size / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == img.size:
        return img.copy()
    return img.resize(new_size, Image.Resampling.LANCZOS)


def fit_longer_side(img: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most `max_side` pixels, keeping the aspect ratio.

    Images that already fit are returned unchanged (the same object).
    """
    if max_side <= 0:
        raise ValueError(f"Invalid max_side {max_side}: it must be a positive number of pixels.")
    width, height = img.size
    if max(width, height) <= max_side:
        return img
    scale = max_side / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(new_size, Image.Resampling.LANCZOS)
