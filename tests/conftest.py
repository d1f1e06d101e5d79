"""Fixtures shared by the test modules: the real data root and small image folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

import paintae  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)


@pytest.fixture
def data_root() -> Path:
    """Return the real data root from $PAINTAE_DATA, or skip the test when it is not set."""
    value = os.environ.get("PAINTAE_DATA", "").strip()
    if not value:
        pytest.skip(
            "PAINTAE_DATA is not set: point it at a folder holding FashionMNIST/raw and "
            "paintings/ to run real-data tests"
        )
    return Path(value)


@pytest.fixture
def tmp_images(tmp_path: Path) -> Path:
    """Return a folder with class subfolders "a" and "b", each containing three small images.

    Class "a" contains 40 x 30 reddish PNGs and class "b" 30 x 40 bluish JPEGs, so sizes, formats
    and colours differ between the classes.
    """
    root = tmp_path / "images"
    for index in range(3):
        folder_a = root / "a"
        folder_b = root / "b"
        folder_a.mkdir(parents=True, exist_ok=True)
        folder_b.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 20 * index, 30)).save(folder_a / f"a{index}.png")
        Image.new("RGB", (30, 40), (10, 20 * index, 220)).save(folder_b / f"b{index}.jpg")
    return root
