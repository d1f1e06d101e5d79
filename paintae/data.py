"""Datasets: Fashion-MNIST splits, folders of paintings, and random crops for few-shot training.

Image tensors are float32 in [0, 1]: (N, 1, 28, 28) for Fashion-MNIST, a list of (3, H, W) for
paintings because their sizes differ. Loaded data is cached in memory for the life of the process,
and callers share the cached tensors, so they must not modify them in place.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
import torchvision.transforms.functional as TF
from torch import Tensor
from torch.utils.data import Dataset

from paintae import config
from paintae.images import IMAGE_SUFFIXES, ImageLoadError, fit_longer_side, load_image, to_tensor

logger = logging.getLogger(__name__)

FASHION_MNIST_SPLITS = ("train", "val", "test")
FASHION_MNIST_TRAIN_SIZE = 48_000  # the other 12,000 of the 60,000 training images form "val"
_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """Missing dataset files; the message names the folder searched and what to do."""


def fashion_mnist_available(root: str | Path | None) -> bool:
    """Return whether `root`/FashionMNIST/raw contains the four uncompressed Fashion-MNIST files."""
    if root is None:
        return False
    raw = Path(root).expanduser() / "FashionMNIST" / "raw"
    return all((raw / name).is_file() for name in _FASHION_MNIST_FILES)


def load_fashion_mnist(
    split: str, root: str | Path | None = None, download: bool = False, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Load one Fashion-MNIST split as (images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64).

    "train" and "val" split the 60,000 training images into 48,000 and 12,000 by a permutation
    seeded with `seed`. "test" is the official 10,000. `root` defaults to
    `config.data_root()`, and torchvision reads the files from `root`/FashionMNIST/raw. With
    `download`, missing files are downloaded there (to `config.default_download_root()` when no
    root is set) with torchvision's progress bar.

    The returned tensors are cached and shared between callers, so do not modify them in place.
    Raises ValueError for an unknown split and DataNotFoundError when the files are missing and
    `download` is False.
    """
    if split not in FASHION_MNIST_SPLITS:
        raise ValueError(
            f"Unknown Fashion-MNIST split {split!r}: use one of {FASHION_MNIST_SPLITS}."
        )
    resolved = config.data_root(root)
    if resolved is None:
        if not download:
            raise DataNotFoundError(
                f"No data folder is set, so Fashion-MNIST cannot be found. Set {config.DATA_ENV} "
                "to a folder containing FashionMNIST/raw, or run with download enabled on a "
                "machine with internet."
            )
        resolved = config.default_download_root()
    if not download and not fashion_mnist_available(resolved):
        raise DataNotFoundError(
            f"Fashion-MNIST files not found in {resolved / 'FashionMNIST' / 'raw'}. Set "
            f"{config.DATA_ENV} to a folder containing FashionMNIST/raw, or run with download "
            "enabled on a machine with internet."
        )
    if download and not fashion_mnist_available(resolved):
        # NOTE: this download path is untested here because the test machines have no internet.
        logger.info("Downloading Fashion-MNIST to %s", resolved)
        _open_torchvision_dataset(resolved, train=True, download=True)
        _open_torchvision_dataset(resolved, train=False, download=True)
    return _load_fashion_mnist_split(str(resolved.resolve()), split, seed)


@functools.lru_cache(maxsize=8)
def _load_fashion_mnist_split(root: str, split: str, seed: int) -> tuple[Tensor, Tensor]:
    if split == "test":
        data, targets = _read_fashion_mnist(root, train=False)
        return data.unsqueeze(1).float().div_(255.0), targets
    data, targets = _read_fashion_mnist(root, train=True)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    if split == "train":
        chosen = order[:FASHION_MNIST_TRAIN_SIZE]
    else:
        chosen = order[FASHION_MNIST_TRAIN_SIZE:]
    return data[chosen].unsqueeze(1).float().div_(255.0), targets[chosen]


@functools.lru_cache(maxsize=2)
def _read_fashion_mnist(root: str, *, train: bool) -> tuple[Tensor, Tensor]:
    """Return the raw uint8 images (N, 28, 28) and int64 labels (N,) read by torchvision."""
    dataset = _open_torchvision_dataset(Path(root), train=train, download=False)
    logger.info("Read %d Fashion-MNIST images (train=%s) from %s", len(dataset.data), train, root)
    return dataset.data, dataset.targets.long()


def _open_torchvision_dataset(
    root: Path, *, train: bool, download: bool
) -> torchvision.datasets.FashionMNIST:
    try:
        return torchvision.datasets.FashionMNIST(root=str(root), train=train, download=download)
    except RuntimeError as error:
        raise DataNotFoundError(
            f"Reading Fashion-MNIST from {root / 'FashionMNIST' / 'raw'} failed ({error}). "
            f"Set {config.DATA_ENV} to a folder containing FashionMNIST/raw, or run with download "
            "enabled on a machine with internet."
        ) from error


@dataclass
class PaintingSet:
    """Decoded paintings with their source paths and class labels.

    images: float32 tensors (3, H, W) in [0, 1], sizes may differ. labels: the index into
    `class_names`, or -1 for every image when the folder has no class subfolders.
    skipped: (file name, reason) for each image file that could not be read.
    """

    images: list[Tensor]
    paths: list[Path]
    labels: list[int]
    class_names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int] | Tensor) -> PaintingSet:
        """Return the images at `indices` in that order; class names and skipped files are kept."""
        chosen = [int(i) for i in indices]
        return PaintingSet(
            images=[self.images[i] for i in chosen],
            paths=[self.paths[i] for i in chosen],
            labels=[self.labels[i] for i in chosen],
            class_names=list(self.class_names),
            skipped=list(self.skipped),
        )

    def copy(self) -> PaintingSet:
        """Return a copy with new lists that share the image tensors."""
        return self.subset(range(len(self)))


# Decoded painting folders kept in memory, least recently used evicted first. 440 paintings of
# about 256 x 330 pixels take about 450 MB as float32.
_PAINTING_CACHE_SIZE = 3
_painting_cache: OrderedDict[tuple, PaintingSet] = OrderedDict()
# Streamlit runs each session in its own thread, so cache updates take this lock.
_painting_cache_lock = threading.Lock()


def _is_visible(path: Path) -> bool:
    return not path.name.startswith((".", "__MACOSX"))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and _is_visible(p)
        and p.suffix.lower() in IMAGE_SUFFIXES
        and _stays_inside(p, folder)
    )


def _stays_inside(path: Path, folder: Path) -> bool:
    """Return False (with a warning) for a link that leads out of `folder`."""
    target = path.resolve()
    if target.is_relative_to(folder.resolve()):
        return True
    logger.warning("Skipping %s: it links to %s, outside %s.", path, target, folder)
    return False


def load_painting_folder(folder: str | Path, *, max_side: int | None = 512) -> PaintingSet:
    """Decode every image in `folder`, or in its class subfolders, into a PaintingSet.

    When subfolders of `folder` contain images, each such subfolder is a class (labels follow
    the sorted subfolder names) and images directly in `folder` are skipped. Otherwise the
    images in `folder` get label -1. Hidden files and files without an image suffix are ignored.
    Images are downscaled so the longer side is at most `max_side` pixels (None keeps the size).
    Files that fail to decode are logged and listed in `skipped`.

    The result is cached by folder, file names, sizes, modification times and `max_side`, so a
    repeat call decodes nothing unless a file changed. The returned lists are new, but the
    image tensors are shared with the cache.

    Raises FileNotFoundError or NotADirectoryError for a bad folder, and ValueError when no
    image could be read.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Painting folder not found: {root}. Check the path.")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder: pass a folder of .jpg/.png files.")
    root = root.resolve()

    class_dirs = [
        d
        for d in sorted(root.iterdir())
        if d.is_dir() and _is_visible(d) and _stays_inside(d, root) and _image_files(d)
    ]
    if class_dirs:
        entries = [(f, label) for label, d in enumerate(class_dirs) for f in _image_files(d)]
        loose = _image_files(root)
    else:
        entries = [(f, -1) for f in _image_files(root)]
        loose = []

    key = (
        str(root),
        max_side,
        tuple(_file_signature(f, root) for f, _ in entries),
        tuple(_file_signature(f, root) for f in loose),
    )
    with _painting_cache_lock:
        cached = _painting_cache.get(key)
        if cached is not None:
            _painting_cache.move_to_end(key)
            return cached.copy()

    paintings = _decode_all(
        [(f.relative_to(root).as_posix(), f, label) for f, label in entries], max_side
    )
    paintings.class_names = [d.name for d in class_dirs]
    for f in loose:
        reason = "the folder has class subfolders, so images outside them are not used"
        logger.warning("Skipped %s: %s", f, reason)
        paintings.skipped.append((f.name, reason))
    if not paintings.images:
        unreadable = len(paintings.skipped)
        raise ValueError(
            f"No images found in {root}: put .jpg/.png files there"
            + (f" ({unreadable} files could not be read)." if unreadable else ".")
        )
    logger.info(
        "Decoded %d images from %s (%d skipped)", len(paintings), root, len(paintings.skipped)
    )

    with _painting_cache_lock:
        _painting_cache[key] = paintings
        while len(_painting_cache) > _PAINTING_CACHE_SIZE:
            _painting_cache.popitem(last=False)
    return paintings.copy()


def _file_signature(path: Path, root: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns)


def _decode_all(sources: list[tuple[str, Path | bytes, int]], max_side: int | None) -> PaintingSet:
    """Decode (name, path or bytes, label) triples, recording failures instead of raising."""
    paintings = PaintingSet(images=[], paths=[], labels=[])
    for name, source, label in sources:
        try:
            img = load_image(source, mode="RGB", name=name)
        except ImageLoadError as error:
            logger.warning("Skipped %s: %s", name, error)
            paintings.skipped.append((name, str(error)))
            continue
        if max_side is not None:
            img = fit_longer_side(img, max_side)
        paintings.images.append(to_tensor(img))
        paintings.paths.append(source if isinstance(source, Path) else Path(name))
        paintings.labels.append(label)
    return paintings


def load_uploaded_images(files: list[tuple[str, bytes]], max_side: int | None = 512) -> PaintingSet:
    """Decode uploaded (file name, bytes) pairs into a PaintingSet with labels -1.

    Every upload is decoded whatever its suffix. Uploads that fail are logged and listed in
    `skipped`, and `paths` contains the bare file names. Raises ValueError when none can be read.
    """
    unique: list[str] = []
    for name, _ in files:
        candidate, copy = name, 1
        while candidate in unique:  # two uploads named alike must stay two gallery entries
            copy += 1
            candidate = f"{name} ({copy})"
        unique.append(candidate)
    sources = [(name, blob, -1) for name, (_, blob) in zip(unique, files, strict=True)]
    paintings = _decode_all(sources, max_side)
    if not paintings.images:
        raise ValueError(
            f"None of the {len(files)} uploaded files could be read as an image: upload "
            ".jpg or .png files."
        )
    return paintings


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split range(n) into sorted (train, test) index lists by a permutation seeded with `seed`.

    The test part has round(n * test_fraction) indices, at least 1 and at most n - 1.
    Raises ValueError for n < 2 or a fraction outside (0, 1).
    """
    if n < 2:
        raise ValueError(f"Cannot split {n} items into train and test: need at least 2.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Invalid test_fraction {test_fraction}: it must be in (0, 1).")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_test:]), sorted(order[:n_test])


def resize_square(images: list[Tensor] | Tensor, size: int) -> Tensor:
    """Resize each image's shorter side to `size` (antialiased), then center-crop to a square.

    Takes a list of (C, H, W) tensors or one (N, C, H, W) tensor and returns (N, C, size, size).
    """
    if size <= 0:
        raise ValueError(f"Invalid size {size}: it must be a positive number of pixels.")
    if isinstance(images, Tensor) and images.dim() == 4:
        return TF.center_crop(TF.resize(images, size, antialias=True), [size, size])
    resized = [
        TF.center_crop(TF.resize(image, size, antialias=True), [size, size]) for image in images
    ]
    if not resized:
        raise ValueError("resize_square received no images.")
    return torch.stack(resized)


class RandomCrops(Dataset):
    """Random square crops of a few images, for training on a small set of paintings.

    Item i picks a source image, a scale factor s in `scale` (the source is treated as resized
    by s), a random crop of `crop` x `crop` pixels at that scale, and a horizontal flip with
    probability 0.5. Only the crop region of size crop / s is resized, which is much cheaper
    than resizing the whole image. When the scaled image is smaller than the crop, the largest
    square region is upsampled instead. `color_jitter` j multiplies brightness and contrast by
    factors in [1 - j, 1 + j]. Items are (C, crop, crop) float32 in [0, 1] and depend only on
    (seed, epoch, index); call `set_epoch` so each epoch draws new crops.
    """

    def __init__(
        self,
        images: list[Tensor],
        crop: int = 128,
        length: int = 1024,
        *,
        scale: tuple[float, float] = (0.5, 1.0),
        flip: bool = True,
        color_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not images:
            raise ValueError("RandomCrops needs at least one image.")
        if crop <= 0 or length <= 0:
            raise ValueError(f"Invalid crop {crop} or length {length}: both must be positive.")
        low, high = scale
        if not 0.0 < low <= high:
            raise ValueError(f"Invalid scale range {scale}: need 0 < low <= high.")
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"Invalid color_jitter {color_jitter}: it must be in [0, 1).")
        self.images = images
        self.crop = crop
        self.length = length
        self.scale = (float(low), float(high))
        self.flip = flip
        self.color_jitter = color_jitter
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of `epoch`; the same epoch always gives the same crops."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"Index {index} is out of range for {self.length} crops.")
        rng = torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.epoch * self.length + index
        )
        image = self.images[int(torch.randint(len(self.images), (1,), generator=rng))]
        _, height, width = image.shape
        low, high = self.scale
        factor = low + (high - low) * float(torch.rand((), generator=rng))
        # The crop covers `region` source pixels, so that resizing it to `crop` equals cropping
        # the image after resizing it by `factor`.
        region = min(round(self.crop / factor), height, width)
        top = int(torch.randint(height - region + 1, (1,), generator=rng))
        left = int(torch.randint(width - region + 1, (1,), generator=rng))
        patch = image[:, top : top + region, left : left + region]
        if region != self.crop:
            patch = TF.resize(patch, [self.crop, self.crop], antialias=True)
        if self.flip and float(torch.rand((), generator=rng)) < 0.5:
            patch = patch.flip(-1)
        if self.color_jitter > 0:
            patch = self._jitter(patch, rng)
        return patch.clamp(0.0, 1.0).contiguous()

    def _jitter(self, patch: Tensor, rng: torch.Generator) -> Tensor:
        brightness, contrast = (
            1.0 + self.color_jitter * (2.0 * torch.rand(2, generator=rng) - 1.0)
        ).tolist()
        mean = patch.mean()
        return (patch - mean) * contrast + mean * brightness


def clear_caches() -> None:
    """Drop every cached Fashion-MNIST split and painting folder, e.g. to free memory."""
    _load_fashion_mnist_split.cache_clear()
    _read_fashion_mnist.cache_clear()
    with _painting_cache_lock:
        _painting_cache.clear()
