"""The reference experiments, rerun on the real data next to the improved designs.

`reproduce` trains every reference row (MLP, denoiser and anomaly model on Fashion-MNIST and Munch)
and the improved variants, and returns a Markdown table that puts the reference printout, the
paintae reproduction of the reference design and the improved design side by side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paintae import anomaly, data, metrics
from paintae.runs import PreparedRun, RunSettings, finish_run, prepare_run
from paintae.trainer import TrainConfig, train

logger = logging.getLogger(__name__)

# Figures printed by the reference implementation, kept for comparison. Its anomaly metrics treat
# Munch (normal) as the positive class.
REFERENCE_PRINTOUT = {
    "mlp-fashion": {"test_mse": 0.011870},
    "mlp-munch": {"test_mse": 0.046179},
    "denoise-fashion": {"test_mse": 0.009630},
    "denoise-munch": {"test_mse": 0.006197},
    "anomaly-munch": {
        "munch_test_mse": 0.000262,
        "vangogh_mse": 0.000375,
        "accuracy_munch_positive": 0.614,
        "precision_munch_positive": 0.574,
        "recall_munch_positive": 0.883,
    },
}


@dataclass
class Row:
    """One line of the results table."""

    experiment: str
    design: str  # "reference printout", "paintae: reference design", "paintae: improved"
    model: str
    epochs: int | str
    seconds: float | None
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    settings: Callable[[Path, bool], RunSettings]
    improved: Callable[[Path, bool], RunSettings]


def _fashion(model: str, family: str, epochs: int, quick: bool, **extra) -> RunSettings:
    config = extra.pop("train", None) or TrainConfig(epochs=epochs, batch_size=64)
    if quick:
        config.epochs = 1
        extra["train_limit"] = 512
    return RunSettings(family=family, model=model, dataset="fashion-mnist", train=config, **extra)


def _munch(root: Path, model: str, family: str, epochs: int, quick: bool, **extra) -> RunSettings:
    config = extra.pop("train", None) or TrainConfig(epochs=epochs, batch_size=16)
    size = extra.pop("image_size", 256)
    if quick:
        config.epochs = 1
        size = min(size, 64)
        extra["crops_per_epoch"] = 32
    return RunSettings(
        family=family,
        model=model,
        dataset="paintings",
        painting_folder=str(root / "paintings" / "munch"),
        image_size=size,
        train=config,
        **extra,
    )


EXPERIMENTS = [
    Experiment(
        "mlp-fashion",
        "Model 1, MLP reconstruction, Fashion-MNIST (latent 64)",
        lambda root, quick: _fashion("mlp", "reconstruction", 10, quick, latent=64),
        lambda root, quick: _fashion(
            "mlp-deep",
            "reconstruction",
            12,
            quick,
            latent=64,
            train=TrainConfig(epochs=12, batch_size=256, lr=2e-3, schedule="cosine"),
        ),
    ),
    Experiment(
        "mlp-munch",
        "Model 1, MLP reconstruction, Munch 256x256 (latent 300)",
        lambda root, quick: _munch(root, "mlp", "reconstruction", 20, quick, latent=300),
        lambda root, quick: _munch(
            root,
            "conv-bottleneck",
            "reconstruction",
            10,
            quick,
            crop=64,
            crops_per_epoch=480,
            train=TrainConfig(epochs=10, batch_size=16, schedule="cosine"),
        ),
    ),
    Experiment(
        "denoise-fashion",
        "Model 2, denoising (Gaussian 0.2), Fashion-MNIST",
        lambda root, quick: _fashion("conv-ref", "denoising", 10, quick),
        lambda root, quick: _fashion(
            "unet",
            "denoising",
            2,
            quick,
            train=TrainConfig(
                epochs=2,
                batch_size=128,
                lr=2e-3,
                schedule="cosine",
                noise_level_range=(0.05, 0.35),
            ),
        ),
    ),
    Experiment(
        "denoise-munch",
        "Model 2, denoising (Gaussian 0.2), Munch 256x256",
        lambda root, quick: _munch(root, "conv-ref", "denoising", 20, quick, crop=None),
        lambda root, quick: _munch(
            root,
            "unet",
            "denoising",
            20,
            quick,
            crop=64,
            crops_per_epoch=512,
            train=TrainConfig(
                epochs=20,
                batch_size=16,
                lr=2e-3,
                schedule="cosine",
                noise_level_range=(0.05, 0.25),
            ),
        ),
    ),
    Experiment(
        "anomaly-munch",
        "Model 3, anomaly detection, Munch normal vs Van Gogh",
        lambda root, quick: _munch(
            root,
            "conv-ref",
            "anomaly",
            20,
            quick,
            crop=None,
            anomaly_score="mse",
            anomaly_space="linear",
            anomaly_k=1.0,
        ),
        lambda root, quick: _munch(
            root,
            "conv-bottleneck",
            "anomaly",
            20,
            quick,
            crop=64,
            crops_per_epoch=480,
            image_size=160,
            train=TrainConfig(epochs=20, batch_size=16, schedule="cosine"),
        ),
    ),
]


def run_experiment(
    experiment: Experiment,
    settings: RunSettings,
    root: Path,
    *,
    on_event=None,
) -> tuple[PreparedRun, dict, float]:
    """Train one configuration and return (run, checkpoint metadata, training seconds)."""
    prepared = prepare_run(settings)
    started = time.perf_counter()
    result = train(
        prepared.model, prepared.train_data, prepared.val_data, settings.train, on_event=on_event
    )
    seconds = time.perf_counter() - started
    metadata = finish_run(prepared, result)
    if experiment.key == "anomaly-munch":
        metadata["test_metrics"].update(anomaly_figures(prepared, metadata, root))
    return prepared, metadata, seconds


def anomaly_figures(prepared: PreparedRun, metadata: dict, root: Path) -> dict[str, float]:
    """Score held-out Munch against every Van Gogh painting and summarise the detector.

    Label 1 is the anomaly (Van Gogh) and a higher score is more anomalous. The balanced figures
    use as many Van Gogh paintings as there are Munch test paintings, drawn with a fixed seed,
    like the reference's test set.
    """
    size = prepared.settings.image_size
    vangogh = data.load_painting_folder(root / "paintings" / "vangogh")
    anomalies = data.resize_square(vangogh.images, size)
    normal = prepared.test_data
    model = prepared.model
    stats = metadata["anomaly"]
    options = anomaly.score_kwargs(stats)
    normal_scores = anomaly.score_images(model, normal, keep_maps=False, **options).scores
    anomaly_scores = anomaly.score_images(model, anomalies, keep_maps=False, **options).scores
    threshold = stats["threshold"]
    scores = np.concatenate([normal_scores, anomaly_scores])
    labels = np.concatenate([np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))])
    point, low, high = metrics.bootstrap_auroc(scores, labels)
    report = metrics.binary_report(scores, labels, threshold)

    pick = torch.randperm(len(anomaly_scores), generator=torch.Generator().manual_seed(0))
    balanced_anomalies = anomaly_scores[pick[: len(normal_scores)].numpy()]
    balanced_scores = np.concatenate([normal_scores, balanced_anomalies])
    balanced_labels = np.concatenate([np.zeros(len(normal_scores)), np.ones(len(normal_scores))])
    balanced = metrics.binary_report(balanced_scores, balanced_labels, threshold)
    # The reference's convention: Munch (not flagged) is the positive class.
    munch_positive = metrics.binary_report(-balanced_scores, 1 - balanced_labels, -threshold)
    mse = [anomaly.score_images(model, x, keep_maps=False).scores for x in (normal, anomalies)]
    return {
        "munch_test_mse": float(np.mean(mse[0])),
        "vangogh_mse": float(np.mean(mse[1])),
        "auroc": point,
        "auroc_low": low,
        "auroc_high": high,
        "vangogh_recall": report["recall"],
        "munch_flagged": report["false_positive_rate"],
        "balanced_accuracy": balanced["accuracy"],
        "accuracy_munch_positive": munch_positive["accuracy"],
        "precision_munch_positive": munch_positive["precision"],
        "recall_munch_positive": munch_positive["recall"],
    }


def reproduce(
    root: Path,
    *,
    quick: bool = False,
    only: list[str] | None = None,
    max_epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Run the reference and improved configuration of each experiment; return table rows.

    `max_epochs` caps the reference-design runs, for machines where the reference's 3.7
    GMAC-per-image conv stack cannot train for its full 20 epochs. The table shows the epochs
    actually run.
    """
    rows: list[Row] = []
    for experiment in EXPERIMENTS:
        if only and experiment.key not in only:
            continue
        rows.append(
            Row(
                experiment.title,
                "reference printout",
                "-",
                "-",
                None,
                REFERENCE_PRINTOUT[experiment.key],
            )
        )
        for design, make in (
            ("paintae: reference design", experiment.settings),
            ("paintae: improved", experiment.improved),
        ):
            settings = make(root, quick)
            if max_epochs is not None and design == "paintae: reference design":
                settings.train.epochs = min(settings.train.epochs, max_epochs)
            if progress:
                progress(f"{experiment.key}: {design} ({settings.model})")
            _, metadata, seconds = run_experiment(experiment, settings, root)
            figures = {k: v for k, v in metadata["test_metrics"].items()}
            rows.append(
                Row(
                    experiment.title,
                    design,
                    settings.model,
                    settings.train.epochs,
                    seconds,
                    figures,
                )
            )
            logger.info("%s %s: %s", experiment.key, design, figures)
    return rows


def rows_to_markdown(rows: list[Row]) -> str:
    """Format rows as a Markdown table; MSE figures get six decimals, others three."""
    lines = [
        "| experiment | design | model | epochs | train seconds | figures |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        figures = ", ".join(f"{k} {_format(k, v)}" for k, v in row.figures.items())
        seconds = "-" if row.seconds is None else f"{row.seconds:.0f}"
        lines.append(
            f"| {row.experiment} | {row.design} | {row.model} | {row.epochs} | "
            f"{seconds} | {figures} |"
        )
    return "\n".join(lines) + "\n"


def _format(key: str, value: float) -> str:
    if "mse" in key:
        return f"{value:.6f}"
    if "psnr" in key:
        return f"{value:.2f} dB"
    return f"{value:.3f}"
