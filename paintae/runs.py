"""Turn user settings into a ready training run, and a finished run into checkpoint metadata.

The app, the command line and the experiment scripts all go through `prepare_run` and
`finish_run`, so a model trained anywhere is evaluated and described the same way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from paintae import anomaly, data, metrics
from paintae.models import MODEL_SPECS, Autoencoder, build_model
from paintae.trainer import TrainConfig, TrainResult, evaluate_loss, make_input

logger = logging.getLogger(__name__)

DATASETS = ("fashion-mnist", "paintings")


@dataclass
class RunSettings:
    """Everything a user chooses before pressing Start. Sizes are pixels, times seconds."""

    family: str = "reconstruction"  # "reconstruction", "denoising" or "anomaly"
    model: str = "mlp"
    dataset: str = "fashion-mnist"
    data_root: str | None = None  # Fashion-MNIST root; None uses PAINTAE_DATA
    painting_folder: str | None = None  # a folder of paintings (class subfolders allowed)
    uploaded: list[tuple[str, bytes]] | None = None  # (file name, bytes) instead of a folder
    image_size: int = 28  # square input size; the evaluation size for fully convolutional models
    latent: int | None = None  # None takes the model's default
    width: int | None = None  # channel width of unet and conv-bottleneck; None takes the default
    # Random training crop for fully convolutional models on paintings; None trains on the whole
    # resized paintings, as the reference design did.
    crop: int | None = 64
    crops_per_epoch: int = 512
    train_limit: int | None = None  # use at most this many training images (Fashion-MNIST)
    download: bool = False  # let torchvision download Fashion-MNIST when it is missing
    test_fraction: float = 0.2  # paintings held out for the test split
    # Anomaly models: the score and the threshold's k. On held-out paintings, 1 - SSIM with a
    # wide window separated Munch from Van Gogh far better than pixel MSE, and the "combined"
    # score did better still (docs/benchmarks.md). anomaly_space applies to "mse" and
    # "blur-mse", because "ssim" always uses log space.
    anomaly_score: str = "combined"
    anomaly_space: str = "linear"
    anomaly_k: float = 1.0
    ssim_sigma: float = 8.0
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting, before any data is loaded."""
        checks = [
            (
                4 <= self.image_size <= 1024,
                f"image size must be 4 to 1024 px, got {self.image_size}",
            ),
            (
                self.train_limit is None or self.train_limit >= 1,
                f"training image count must be at least 1, got {self.train_limit}",
            ),
            (
                self.crop is None or 8 <= self.crop <= 512,
                f"crop must be 8 to 512 px, got {self.crop}",
            ),
            (
                self.anomaly_score in anomaly.SCORE_KINDS,
                f"anomaly score must be one of {', '.join(anomaly.SCORE_KINDS)}, "
                f"got {self.anomaly_score!r}",
            ),
            (
                self.ssim_sigma > 0 and self.anomaly_k >= 0,
                f"SSIM sigma must be positive and k not negative, got {self.ssim_sigma} and "
                f"{self.anomaly_k}",
            ),
            (
                self.width is None or 4 <= self.width <= 256,
                f"model width must be 4 to 256 channels, got {self.width}",
            ),
            (
                1 <= self.crops_per_epoch <= 100_000,
                f"crops per epoch must be 1 to 100000, got {self.crops_per_epoch}",
            ),
            (
                0 < self.test_fraction < 1,
                f"test fraction must be between 0 and 1, got {self.test_fraction}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message[0].upper() + message[1:] + ".")
        self.train.validate()


@dataclass
class PreparedRun:
    settings: RunSettings
    model: Autoencoder
    train_data: torch.Tensor | torch.utils.data.Dataset
    val_data: torch.Tensor | None
    test_data: torch.Tensor | None
    description: dict  # what was trained on, stored in the checkpoint metadata


def prepare_run(settings: RunSettings) -> PreparedRun:
    """Load the data and build a fresh model for `settings`.

    Raises ValueError (bad settings), data.DataNotFoundError (missing Fashion-MNIST) or
    FileNotFoundError/NotADirectoryError (missing painting folder), each naming the value to fix.
    """
    if settings.model not in MODEL_SPECS:
        raise ValueError(
            f"Unknown model {settings.model!r}; choose one of {', '.join(MODEL_SPECS)}."
        )
    spec = MODEL_SPECS[settings.model]
    if settings.dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {settings.dataset!r}; choose one of {DATASETS}.")
    settings.train.task = "denoise" if settings.family == "denoising" else "reconstruct"
    settings.validate()
    fully_conv = spec.builder.fully_convolutional

    if settings.dataset == "fashion-mnist":
        if not fully_conv and settings.image_size != 28:
            raise ValueError(
                f"Fashion-MNIST images are 28 x 28; got image size {settings.image_size}."
            )
        settings.image_size = 28
        root, download = settings.data_root, settings.download
        train_x, _ = data.load_fashion_mnist("train", root, download=download)
        val_x, _ = data.load_fashion_mnist("val", root, download=download)
        test_x, _ = data.load_fashion_mnist("test", root, download=download)
        if settings.train_limit:
            train_x = train_x[: settings.train_limit]
        channels = 1
        train_data: torch.Tensor | torch.utils.data.Dataset = train_x
        description = {
            "dataset": "fashion-mnist",
            "train": len(train_x),
            "val": len(val_x),
            "test": len(test_x),
        }
    else:
        paintings = _load_paintings(settings)
        train_idx, test_idx = data.split_indices(
            len(paintings), settings.test_fraction, settings.train.seed
        )
        train_set, test_set = paintings.subset(train_idx), paintings.subset(test_idx)
        if settings.family == "anomaly" and len(train_set) < 2:
            raise ValueError(
                f"Anomaly training needs at least 2 training paintings after the test split, "
                f"got {len(train_set)} of {len(paintings)}. Add paintings (4 or more also "
                "enable the combined score)."
            )
        channels = 3
        test_x = data.resize_square(test_set.images, settings.image_size)
        if fully_conv and settings.crop:
            train_data = data.RandomCrops(
                train_set.images, settings.crop, settings.crops_per_epoch, seed=settings.train.seed
            )
            # NOTE: the "validation" loss of crop-trained models is measured on the whole training
            # paintings, because the few paintings there are all go to training or test.
            val_x = data.resize_square(train_set.images, settings.image_size)
        else:
            train_x = data.resize_square(train_set.images, settings.image_size)
            train_data, val_x = train_x, None
        description = {
            "dataset": "paintings",
            "folder": settings.painting_folder or "uploaded",
            "train": len(train_set),
            "test": len(test_set),
            "train_files": [p.name for p in train_set.paths],
            "test_files": [p.name for p in test_set.paths],
            "skipped": paintings.skipped,
            "crop": settings.crop if fully_conv else None,
        }
    extra = {} if settings.width is None else {"width": settings.width}
    model = build_model(
        settings.model,
        in_channels=channels,
        image_size=settings.image_size,
        latent=settings.latent,
        **extra,
    )
    description["image_size"] = settings.image_size
    return PreparedRun(settings, model, train_data, val_x, test_x, description)


def finish_run(prepared: PreparedRun, result: TrainResult) -> dict:
    """Evaluate the trained model on the test split and return checkpoint metadata.

    Denoisers also get test PSNR/SSIM of noisy and denoised images. Anomaly models get the
    statistics of their scores on the training paintings, which set the default threshold.
    """
    settings, model = prepared.settings, prepared.model
    config = settings.train
    test_metrics: dict[str, float] = {}
    if prepared.test_data is not None:
        test_metrics["test_mse"] = evaluate_loss(model, prepared.test_data, config)
        if settings.family == "denoising":
            test_metrics.update(denoising_metrics(model, prepared.test_data, config))
    metadata = {
        "family": settings.family,
        "data": prepared.description,
        "train_config": asdict(config),
        "history": result.history,
        "train_seconds": result.seconds,
        "test_metrics": test_metrics,
    }
    if settings.family == "anomaly":
        reference = prepared.val_data if prepared.val_data is not None else prepared.train_data
        metadata["anomaly"] = threshold_statistics(model, reference, settings)
    return metadata


def denoising_metrics(
    model: Autoencoder, clean: torch.Tensor, config: TrainConfig, batch_size: int = 256
) -> dict[str, float]:
    """Return mean PSNR (dB) and SSIM of noisy and denoised images against `clean`."""
    generator = torch.Generator().manual_seed(config.seed + 7919)
    totals = {"psnr_noisy": 0.0, "psnr_denoised": 0.0, "ssim_noisy": 0.0, "ssim_denoised": 0.0}
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(clean), batch_size):
            target = clean[start : start + batch_size]
            noisy = make_input(target, config, generator)
            output = model(noisy.to(device)).cpu()
            totals["psnr_noisy"] += metrics.psnr(noisy, target).sum().item()
            totals["psnr_denoised"] += metrics.psnr(output, target).sum().item()
            totals["ssim_noisy"] += metrics.ssim(noisy, target).sum().item()
            totals["ssim_denoised"] += metrics.ssim(output, target).sum().item()
    return {key: value / len(clean) for key, value in totals.items()}


def threshold_statistics(
    model: Autoencoder, normal_images: torch.Tensor, settings: RunSettings
) -> dict:
    """Score the training paintings and return the statistics behind the default threshold.

    The training paintings, not a handful of held-out ones, set the threshold: with about 60
    Munch paintings a validation split of 12 gave unstable statistics, and the training and test
    errors of the crop-trained model are close. The SSIM window shrinks to fit small images, and
    the combined score falls back to 1 - SSIM when there are fewer than 4 normal images.
    """
    side = min(normal_images.shape[-2:])
    sigma = min(settings.ssim_sigma, max(0.5, (side - 1) / 3))
    kind = settings.anomaly_score
    if kind == "combined" and len(normal_images) < 4:
        kind = "ssim"
    scored = anomaly.score_images(
        model,
        normal_images,
        score="ssim" if kind == "combined" else kind,
        ssim_sigma=sigma,
        keep_maps=False,
        keep_features=kind == "combined",
    )
    if kind == "combined":
        assert scored.features is not None
        return anomaly.combined_statistics(
            scored.scores, scored.features, k=settings.anomaly_k, ssim_sigma=sigma
        )
    space = "log" if kind == "ssim" else settings.anomaly_space
    return anomaly.normal_statistics(
        scored.scores, score=kind, k=settings.anomaly_k, space=space, ssim_sigma=sigma
    )


def _load_paintings(settings: RunSettings) -> data.PaintingSet:
    if settings.uploaded:
        return data.load_uploaded_images(settings.uploaded)
    if not settings.painting_folder:
        raise ValueError("Choose a painting folder or upload paintings to train on.")
    return data.load_painting_folder(Path(settings.painting_folder))
