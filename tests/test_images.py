"""Tests for paintae.images: the safe loader on real broken and unusual files, and conversions."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paintae.images import (
    ImageLoadError,
    fit_longer_side,
    load_image,
    resize_shorter,
    to_pil,
    to_tensor,
    to_uint8,
)


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _png_header_only(width: int, height: int) -> bytes:
    """Return a PNG whose IHDR claims `width` x `height` but contains no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_load_image_reads_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    _noise_image(32, 24).save(path, quality=95)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (32, 24)


def test_load_image_rejects_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    _noise_image(128, 128).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="'cut.jpg'.*truncated or corrupt"):
        load_image(path)


def test_load_image_rejects_random_bytes_with_jpg_suffix(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="'noise.jpg'"):
        load_image(path)


def test_load_image_rejects_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageLoadError, match="'notes.txt'.*not an image"):
        load_image(path)


def test_load_image_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(path)


def test_load_image_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "absent.png")


def test_load_image_scales_16bit_png(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    samples = np.array([[0, 257 * 10, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(samples).save(path)
    assert Image.open(path).mode.startswith("I")
    gray = np.asarray(load_image(path, mode="L"))
    assert gray.tolist() == [[0, 10, 128, 255]]
    rgb = np.asarray(load_image(path, mode="RGB"))
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, 3].tolist() == [255, 255, 255]


def test_load_image_composites_palette_transparency_on_white(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.save(path, transparency=0)
    pixels = np.asarray(load_image(path))
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[1, 1].tolist() == [255, 255, 255]


def test_load_image_composites_rgba_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)])
    img.save(path)
    pixels = np.asarray(load_image(path))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [0, 0, 255]
    assert all(abs(int(v) - 127) <= 1 for v in pixels[0, 2])


def test_load_image_composites_la_on_white(tmp_path: Path) -> None:
    path = tmp_path / "gray_alpha.png"
    Image.new("LA", (2, 2), (0, 0)).save(path)
    assert np.asarray(load_image(path, mode="L")).tolist() == [[255, 255], [255, 255]]


def test_load_image_converts_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=95)
    img = load_image(path)
    red, green, blue = np.asarray(img)[4, 4].tolist()
    assert img.mode == "RGB"
    assert red > 200
    assert green < 60
    assert blue < 60


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _noise_image(40, 20).save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_load_image_rejects_image_over_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    _noise_image(100, 100).save(path)
    with pytest.raises(ImageLoadError, match=r"'big.png'.*10,000 pixels.*5,000"):
        load_image(path, max_pixels=5_000)


def test_load_image_rejects_decompression_bomb_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="'bomb.png'"):
        load_image(path)


def test_load_image_turns_bomb_warning_into_error(tmp_path: Path) -> None:
    # 100 million pixels is above Pillow's warning limit (about 89 million) but below its error
    # limit, and max_pixels is raised so that only Pillow's own check can reject it.
    path = tmp_path / "warn.png"
    path.write_bytes(_png_header_only(10_000, 10_000))
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, max_pixels=500_000_000)


def test_load_image_rejects_bytes_over_max_bytes() -> None:
    buffer = io.BytesIO()
    _noise_image(64, 64).save(buffer, format="PNG")
    with pytest.raises(ImageLoadError, match="'upload.png'.*bytes, more than the limit of 1,000"):
        load_image(buffer.getvalue(), name="upload.png", max_bytes=1_000)


def test_load_image_reads_uploaded_bytes() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 7), (1, 2, 3)).save(buffer, format="PNG")
    img = load_image(buffer.getvalue())
    assert img.size == (5, 7)
    assert np.asarray(img)[0, 0].tolist() == [1, 2, 3]


def test_load_image_names_upload_in_error() -> None:
    with pytest.raises(ImageLoadError, match="'scan.jpg'"):
        load_image(b"definitely not an image", name="scan.jpg")


def test_load_image_expands_grayscale_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (3, 3), 90).save(path)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (3, 3, 3)
    assert pixels[1, 1].tolist() == [90, 90, 90]


def test_load_image_converts_rgb_to_luminance(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (2, 2), (255, 0, 0)).save(path)
    img = load_image(path, mode="L")
    assert img.mode == "L"
    assert np.asarray(img)[0, 0] == 76  # ITU-R 601-2: 0.299 * 255


def test_load_image_converts_bilevel_to_gray(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    Image.new("1", (4, 4), 1).save(path)
    img = load_image(path, mode="L")
    assert np.asarray(img).tolist() == [[255] * 4] * 4


def test_load_image_takes_first_gif_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    red, green, blue = np.asarray(load_image(path))[3, 3].tolist()
    assert red > 200
    assert blue < 60


def test_load_image_rejects_unknown_mode(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(ValueError, match="'CMYK'"):
        load_image(path, mode="CMYK")


def test_to_tensor_returns_unit_range_chw() -> None:
    img = Image.new("RGB", (5, 4), (255, 0, 51))
    x = to_tensor(img)
    assert x.shape == (3, 4, 5)
    assert x.dtype == torch.float32
    assert x[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_to_tensor_rejects_rgba() -> None:
    with pytest.raises(ValueError, match="'RGBA'"):
        to_tensor(Image.new("RGBA", (2, 2)))


def test_to_uint8_clamps_and_rounds() -> None:
    x = torch.tensor([[[-0.5, 0.5, 1.5]]])
    assert to_uint8(x).shape == (1, 3, 1)
    assert to_uint8(x)[0, :, 0].tolist() == [0, 128, 255]


def test_to_pil_round_trips_rgb_and_gray() -> None:
    rgb = torch.rand(3, 6, 5)
    gray = torch.rand(6, 5)
    assert to_pil(rgb).mode == "RGB"
    assert to_pil(gray).mode == "L"
    assert to_pil(gray).size == (5, 6)
    assert torch.allclose(to_tensor(to_pil(rgb)), rgb, atol=1 / 255)


def test_to_uint8_rejects_batch() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\)"):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_resize_shorter_keeps_aspect_ratio() -> None:
    assert resize_shorter(Image.new("RGB", (300, 200)), 100).size == (150, 100)
    assert resize_shorter(Image.new("RGB", (200, 300)), 100).size == (100, 150)


def test_fit_longer_side_downscales_only() -> None:
    small = Image.new("RGB", (50, 40))
    assert fit_longer_side(small, 100) is small
    assert fit_longer_side(Image.new("RGB", (400, 100)), 200).size == (200, 50)
