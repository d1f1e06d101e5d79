"""Tests for paintae.data: painting folders, uploads, splits, crops and Fashion-MNIST."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from paintae import data
from paintae.data import (
    DataNotFoundError,
    PaintingSet,
    RandomCrops,
    fashion_mnist_available,
    load_fashion_mnist,
    load_painting_folder,
    load_uploaded_images,
    resize_square,
    split_indices,
)


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap data.load_image so that each decoded source name is recorded in the returned list."""
    calls: list[str] = []
    real_load_image = data.load_image

    def counting_load_image(source, **kwargs):
        calls.append(kwargs.get("name", str(source)))
        return real_load_image(source, **kwargs)

    monkeypatch.setattr(data, "load_image", counting_load_image)
    return calls


def _png_bytes(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_painting_folder_labels_class_subfolders(tmp_images: Path) -> None:
    paintings = load_painting_folder(tmp_images)
    assert len(paintings) == 6
    assert paintings.class_names == ["a", "b"]
    assert paintings.labels == [0, 0, 0, 1, 1, 1]
    assert [p.name for p in paintings.paths] == ["a0.png", "a1.png", "a2.png"] + [
        "b0.jpg",
        "b1.jpg",
        "b2.jpg",
    ]
    assert paintings.images[0].shape == (3, 30, 40)
    assert paintings.images[3].shape == (3, 40, 30)
    assert paintings.images[0].dtype == torch.float32
    assert paintings.skipped == []


def test_load_painting_folder_flat_folder_has_no_labels(tmp_path: Path) -> None:
    for index in range(2):
        Image.new("RGB", (8, 8), (index * 100, 0, 0)).save(tmp_path / f"p{index}.png")
    paintings = load_painting_folder(tmp_path)
    assert paintings.labels == [-1, -1]
    assert paintings.class_names == []


def test_load_painting_folder_skips_corrupt_file_with_warning(
    tmp_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_images / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with caplog.at_level(logging.WARNING, logger="paintae.data"):
        paintings = load_painting_folder(tmp_images)
    assert len(paintings) == 6
    assert [name for name, _ in paintings.skipped] == ["a/broken.jpg"]
    assert "truncated or corrupt" in paintings.skipped[0][1]
    assert "a/broken.jpg" in caplog.text


def test_load_painting_folder_ignores_hidden_and_non_image_files(tmp_images: Path) -> None:
    (tmp_images / "a" / "README.txt").write_text("notes")
    (tmp_images / "a" / ".hidden.png").write_bytes(b"junk")
    (tmp_images / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_images / ".thumbnails" / "t.png")
    paintings = load_painting_folder(tmp_images)
    assert len(paintings) == 6
    assert paintings.class_names == ["a", "b"]
    assert paintings.skipped == []


def test_load_painting_folder_skips_images_outside_class_folders(tmp_images: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_images / "loose.png")
    paintings = load_painting_folder(tmp_images)
    assert len(paintings) == 6
    assert [name for name, _ in paintings.skipped] == ["loose.png"]


def test_load_painting_folder_rejects_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"No images found in {tmp_path}"):
        load_painting_folder(tmp_path)


def test_load_painting_folder_rejects_folder_of_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="1 files could not be read"):
        load_painting_folder(tmp_path)


def test_load_painting_folder_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent"):
        load_painting_folder(tmp_path / "absent")


def test_load_painting_folder_rejects_file(tmp_path: Path) -> None:
    path = tmp_path / "single.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(NotADirectoryError, match="single.png"):
        load_painting_folder(path)


def test_load_painting_folder_limits_longer_side(tmp_path: Path) -> None:
    Image.new("RGB", (200, 100)).save(tmp_path / "wide.png")
    assert load_painting_folder(tmp_path, max_side=50).images[0].shape == (3, 25, 50)
    assert load_painting_folder(tmp_path, max_side=None).images[0].shape == (3, 100, 200)


def test_load_painting_folder_caches_decoded_images(
    tmp_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_decodes(monkeypatch)
    first = load_painting_folder(tmp_images)
    assert len(calls) == 6
    second = load_painting_folder(tmp_images)
    assert len(calls) == 6
    assert second.images[0] is first.images[0]
    # The lists are copies, so a caller that edits them does not change the cache.
    first.images.clear()
    assert len(load_painting_folder(tmp_images)) == 6


def test_load_painting_folder_decodes_again_after_change(
    tmp_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_decodes(monkeypatch)
    load_painting_folder(tmp_images)
    changed = tmp_images / "a" / "a0.png"
    Image.new("RGB", (40, 30), (0, 255, 0)).save(changed)
    os.utime(changed, ns=(1, 1))
    reloaded = load_painting_folder(tmp_images)
    assert len(calls) == 12
    assert reloaded.images[0][:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    load_painting_folder(tmp_images, max_side=16)
    assert len(calls) == 18


@pytest.mark.realdata
def test_load_painting_folder_reads_real_paintings(data_root: Path) -> None:
    paintings = load_painting_folder(data_root / "paintings")
    assert paintings.class_names == ["munch", "vangogh"]
    assert paintings.labels.count(0) == 76
    assert paintings.labels.count(1) == 364
    assert paintings.skipped == []
    assert all(image.shape[0] == 3 and max(image.shape[1:]) <= 512 for image in paintings.images)


def test_load_uploaded_images_skips_unreadable_upload(caplog: pytest.LogCaptureFixture) -> None:
    uploads = [("good.png", _png_bytes((12, 10), (0, 0, 255))), ("bad.jpg", b"garbage")]
    with caplog.at_level(logging.WARNING, logger="paintae.data"):
        paintings = load_uploaded_images(uploads, max_side=6)
    assert len(paintings) == 1
    assert paintings.images[0].shape == (3, 5, 6)
    assert paintings.paths == [Path("good.png")]
    assert paintings.labels == [-1]
    assert [name for name, _ in paintings.skipped] == ["bad.jpg"]
    assert "bad.jpg" in caplog.text


def test_load_uploaded_images_rejects_all_unreadable() -> None:
    with pytest.raises(ValueError, match="None of the 2 uploaded files"):
        load_uploaded_images([("a.png", b"x"), ("b.png", b"y")])


def test_painting_set_subset_keeps_order(tmp_images: Path) -> None:
    paintings = load_painting_folder(tmp_images)
    part = paintings.subset([4, 0])
    assert isinstance(part, PaintingSet)
    assert [p.name for p in part.paths] == ["b1.jpg", "a0.png"]
    assert part.labels == [1, 0]
    assert part.class_names == ["a", "b"]


def test_split_indices_is_disjoint_and_seeded() -> None:
    train, test = split_indices(10, test_fraction=0.3, seed=1)
    assert len(test) == 3
    assert sorted(train + test) == list(range(10))
    assert split_indices(10, test_fraction=0.3, seed=1) == (train, test)
    assert split_indices(10, test_fraction=0.3, seed=2) != (train, test)


def test_split_indices_keeps_both_parts_nonempty() -> None:
    assert [len(part) for part in split_indices(3, test_fraction=0.01)] == [2, 1]
    assert [len(part) for part in split_indices(3, test_fraction=0.99)] == [1, 2]


@pytest.mark.parametrize(("n", "fraction"), [(1, 0.2), (10, 0.0), (10, 1.0)])
def test_split_indices_rejects_bad_arguments(n: int, fraction: float) -> None:
    with pytest.raises(ValueError):
        split_indices(n, test_fraction=fraction)


def test_resize_square_crops_center() -> None:
    wide = torch.zeros(3, 20, 40)
    wide[:, :, 6:34] = 1.0  # the center crop keeps columns 10:30 of the source
    tall = torch.rand(3, 30, 10)
    batch = resize_square([wide, tall], 10)
    assert batch.shape == (2, 3, 10, 10)
    assert torch.allclose(batch[0], torch.ones(3, 10, 10), atol=1e-5)
    assert resize_square(torch.rand(4, 1, 28, 28), 14).shape == (4, 1, 14, 14)


def test_random_crops_returns_seeded_crops() -> None:
    images = [torch.rand(3, 60, 80), torch.rand(3, 50, 50)]
    crops = RandomCrops(images, crop=32, length=10, seed=3)
    assert len(crops) == 10
    item = crops[4]
    assert item.shape == (3, 32, 32)
    assert item.min() >= 0.0
    assert item.max() <= 1.0
    assert torch.equal(item, RandomCrops(images, crop=32, length=10, seed=3)[4])
    assert not torch.equal(item, crops[5])
    crops.set_epoch(1)
    assert not torch.equal(item, crops[4])


def test_random_crops_upsamples_small_images() -> None:
    crops = RandomCrops([torch.rand(1, 20, 30)], crop=64, length=2, scale=(0.5, 1.0))
    assert crops[0].shape == (1, 64, 64)
    assert crops[1].shape == (1, 64, 64)


def test_random_crops_applies_color_jitter() -> None:
    images = [torch.full((3, 40, 40), 0.5)]
    plain = RandomCrops(images, crop=16, length=4, flip=False, seed=1)[0]
    jittered = RandomCrops(images, crop=16, length=4, flip=False, color_jitter=0.4, seed=1)[0]
    assert not torch.allclose(plain, jittered)


def test_random_crops_rejects_index_out_of_range() -> None:
    crops = RandomCrops([torch.rand(3, 40, 40)], crop=16, length=4)
    with pytest.raises(IndexError):
        crops[4]


@pytest.mark.parametrize(
    "kwargs", [{"crop": 0}, {"length": 0}, {"scale": (0.0, 1.0)}, {"scale": (1.0, 0.5)}]
)
def test_random_crops_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RandomCrops([torch.rand(3, 40, 40)], **kwargs)


def test_load_fashion_mnist_reports_missing_files(tmp_path: Path) -> None:
    assert not fashion_mnist_available(tmp_path)
    with pytest.raises(DataNotFoundError, match="FashionMNIST/raw.*PAINTAE_DATA") as caught:
        load_fashion_mnist("train", root=tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_load_fashion_mnist_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'validation'"):
        load_fashion_mnist("validation", root=tmp_path)


@pytest.mark.realdata
def test_load_fashion_mnist_split_sizes(data_root: Path) -> None:
    assert fashion_mnist_available(data_root)
    sizes = {}
    for split in ("train", "val", "test"):
        images, labels = load_fashion_mnist(split, root=data_root)
        assert images.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert images.shape[1:] == (1, 28, 28)
        assert images.min() >= 0.0
        assert images.max() <= 1.0
        assert len(labels) == len(images)
        sizes[split] = len(images)
    assert sizes == {"train": 48_000, "val": 12_000, "test": 10_000}


@pytest.mark.realdata
def test_load_fashion_mnist_split_is_seeded(data_root: Path) -> None:
    train, train_labels = load_fashion_mnist("train", root=data_root, seed=0)
    val, val_labels = load_fashion_mnist("val", root=data_root, seed=0)
    assert load_fashion_mnist("train", root=data_root, seed=0)[0] is train
    other_train, _ = load_fashion_mnist("train", root=data_root, seed=1)
    assert not torch.equal(train[:100], other_train[:100])
    # Train and val partition the 60,000 training images, which hold 6,000 of each class.
    counts = torch.bincount(torch.cat([train_labels, val_labels]), minlength=10)
    assert counts.tolist() == [6_000] * 10
