"""Measurement helpers for scripts/benchmark.py: machine facts, rates, baselines and tables.

Timings use time.perf_counter. Image tensors are float32 in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from sklearn.covariance import LedoitWolf
from torch import nn

SATURATION_BINS = 8


def machine_description() -> dict:
    """Return the CPU model, core counts, memory, Python and torch versions, threads and date."""
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    memory_gib = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory_gib = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": memory_gib,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def record(
    section: str,
    figure: str,
    value: float | None,
    unit: str,
    *,
    design: str = "-",
    baseline: str | None = None,
    baseline_value: float | None = None,
    note: str = "",
) -> dict:
    """Return one machine-readable result with its ratio to a baseline from the same run.

    `ratio` is value / baseline_value and `difference` is value - baseline_value. Both are None
    when either side is missing, and `ratio` is also None when the baseline is zero.
    """
    ratio = difference = None
    if value is not None and baseline_value is not None:
        difference = float(value) - float(baseline_value)
        if baseline_value != 0:
            ratio = float(value) / float(baseline_value)
    return {
        "section": section,
        "figure": figure,
        "design": design,
        "value": None if value is None else float(value),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else float(baseline_value),
        "ratio": ratio,
        "difference": difference,
        "note": note,
    }


def summarize_milliseconds(samples: Sequence[float]) -> dict[str, float]:
    """Return the median, 95th percentile, min and max of durations given in milliseconds."""
    array = np.asarray(samples, dtype=np.float64)
    return {
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def matmul_flop_rate(size: int = 1024, seconds: float = 2.0) -> float:
    """Return the float32 FLOP rate (FLOP/s) of size x size @ size x size matrix products.

    One product counts 2 * size**3 FLOPs. Runs after one warm-up product for about `seconds`.
    """
    a = torch.rand(size, size)
    b = torch.rand(size, size)
    torch.mm(a, b)
    count = 0
    started = time.perf_counter()
    while True:
        torch.mm(a, b)
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    return 2.0 * size**3 * count / elapsed


def linear_training_flops(model: nn.Module) -> int:
    """Return the training FLOPs per image of the model's Linear layers.

    The forward pass of a Linear layer costs 2 * in * out FLOPs per image, and a training step
    (forward, input gradient and weight gradient) three times that. Biases, activations and the
    optimizer are not counted.
    """
    forward = sum(
        2 * module.in_features * module.out_features
        for module in model.modules()
        if isinstance(module, nn.Linear)
    )
    return 3 * forward


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB.

    Reads VmHWM from /proc/self/status where it exists, because Linux carries ru_maxrss over
    fork and exec, so a subprocess of a large parent would report the parent's peak. Falls back
    to getrusage's ru_maxrss (kibibytes on Linux) elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """Call `function` and return (its result, seconds it took)."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


# -- anomaly baselines without a model ---------------------------------------------------------


def colour_features(images: torch.Tensor) -> np.ndarray:
    """Return per-image colour statistics (N, 6 + SATURATION_BINS) of RGB images (N, 3, H, W).

    Features: the mean and standard deviation of each RGB channel, then a normalized histogram
    of HSV saturation (max - min) / max over SATURATION_BINS equal bins of [0, 1].
    """
    flat = images.flatten(2)  # (N, 3, H*W)
    mean = flat.mean(dim=2)
    std = flat.std(dim=2)
    high = images.amax(dim=1)
    low = images.amin(dim=1)
    saturation = torch.where(high > 0, (high - low) / high.clamp_min(1e-8), torch.zeros_like(high))
    bins = (saturation.flatten(1) * SATURATION_BINS).long().clamp(0, SATURATION_BINS - 1)
    histogram = torch.zeros(len(images), SATURATION_BINS)
    histogram.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float32))
    histogram /= bins.shape[1]
    return torch.cat([mean, std, histogram], dim=1).double().numpy()


def mahalanobis_scores(reference: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Return the Mahalanobis distance of each row of `features` to the `reference` rows.

    The covariance is the Ledoit-Wolf shrinkage estimate, which stays invertible when there are
    fewer reference images than features.
    """
    estimator = LedoitWolf().fit(reference)
    return np.sqrt(estimator.mahalanobis(features))


def high_frequency_energy(images: torch.Tensor, sigma: float = 2.0) -> np.ndarray:
    """Return each image's mean squared difference between its luma and a blurred luma, (N,).

    The blur is Gaussian with `sigma` pixels, so the energy measures detail finer than about
    two pixels: brush strokes, canvas texture and JPEG noise.
    """
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    luma = (images * weights).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    blurred = TF.gaussian_blur(luma, [kernel, kernel], [sigma, sigma])
    return (luma - blurred).pow(2).mean(dim=(1, 2, 3)).double().numpy()


def z_distance(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return |log(value) - mean| / std, with mean and std of log(reference): a one-class score."""
    log_reference = np.log(np.maximum(reference, 1e-12))
    log_values = np.log(np.maximum(values, 1e-12))
    spread = log_reference.std() or 1.0
    return np.abs(log_values - log_reference.mean()) / spread


# -- tables ------------------------------------------------------------------------------------


def format_value(value: object) -> str:
    """Format a table cell: floats with four significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if value != value:  # NaN
            return "nan"
        if value == 0 or 0.01 <= abs(value) < 100_000:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a Markdown table with a header row."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(cell) for cell in row) + " |")
    return "\n".join(lines)


def text_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a plain-text table with columns padded to their widest cell."""
    cells = [list(columns)] + [[format_value(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
