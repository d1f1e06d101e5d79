"""Checkpoints: one safetensors file holding the weights and, in its header, JSON metadata.

A single file means one atomic rename publishes a checkpoint, and safetensors never unpickles, so a
checkpoint from an untrusted source cannot run code. The metadata (model config, data, history,
test metrics, anomaly threshold statistics) can be read without loading any tensor.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from paintae import __version__, config
from paintae.anomaly import MAX_REFERENCE_IMAGES, MIN_REFERENCE_IMAGES
from paintae.models import MODEL_SPECS, Autoencoder, build_from_config

logger = logging.getLogger(__name__)

FORMAT = "paintae-checkpoint/1"
SUFFIX = ".safetensors"
METADATA_KEY = "paintae"
OPTIMIZER_PREFIX = "optimizer."
# The combined anomaly score's reference features are stored as this tensor, not as JSON.
REFERENCE_KEY = "anomaly.reference_features"
# Spreads below this make z-scores overflow; real score spreads are many orders larger.
MIN_LOG_STD = 1e-6
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_CHECKPOINT_BYTES = 2 * 2**30


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of another format, or does not fit its model."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint found on disk, with its metadata read from the file header."""

    name: str
    path: Path
    metadata: dict

    @property
    def family(self) -> str:
        return self.metadata.get("family", "")

    @property
    def model_name(self) -> str:
        return self.metadata.get("model", {}).get("name", "")

    @property
    def shipped(self) -> bool:
        return self.path.parent == config.repo_checkpoint_dir()


def validate_name(name: str) -> str:
    """Return `name` stripped if it is a valid checkpoint name, else raise ValueError."""
    cleaned = name.strip()
    if cleaned.endswith(SUFFIX):
        cleaned = cleaned[: -len(SUFFIX)]
    if not NAME_PATTERN.fullmatch(cleaned):
        raise ValueError(
            f"Invalid checkpoint name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return cleaned


def resolve(reference: str | Path) -> Path:
    """Return the file for a checkpoint path or a checkpoint name as the app lists it.

    A name is looked up in `config.checkpoint_dirs()`. Raises CheckpointError naming the
    folders searched when neither exists.
    """
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    if path.parent == Path("."):
        for folder in config.checkpoint_dirs():
            candidate = folder / f"{stem}{SUFFIX}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(folder) for folder in config.checkpoint_dirs())
    raise CheckpointError(
        f"Checkpoint {str(reference)!r} not found: give a file path or the name of a checkpoint "
        f"in {searched}."
    )


def checkpoint_path(name: str, folder: Path | None = None) -> Path:
    return (folder or config.user_checkpoint_dir()) / f"{validate_name(name)}{SUFFIX}"


def save_checkpoint(
    path: str | Path,
    model: Autoencoder,
    metadata: dict,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    overwrite: bool = False,
) -> Path:
    """Write weights (and optionally Adam state) with metadata atomically; return the path.

    The file is written to a temporary name in the same folder and renamed, so a reader sees either
    the old file or the complete new one. Raises FileExistsError when the file exists and
    `overwrite` is False.
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"Checkpoint {path} already exists; choose another name or overwrite."
        )
    path.parent.mkdir(parents=True, exist_ok=True)

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update(_optimizer_tensors(optimizer))
    metadata = dict(metadata)
    if isinstance(metadata.get("anomaly"), dict) and "reference_features" in metadata["anomaly"]:
        stats = dict(metadata["anomaly"])
        reference = torch.as_tensor(stats.pop("reference_features"), dtype=torch.float32)
        tensors[REFERENCE_KEY] = reference.detach().cpu().contiguous()
        metadata["anomaly"] = stats
    header = {
        "format": FORMAT,
        "paintae_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model.config,
        "family": MODEL_SPECS[model.config["name"]].family,
        **metadata,
    }
    header["family"] = metadata.get("family", header["family"])
    blob = save_bytes(tensors, metadata={METADATA_KEY: json.dumps(header)})

    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp creates 0600; checkpoints are shareable
            file.write(blob)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            # link() fails when the name exists, so two saves racing for one new name cannot
            # both succeed, unlike an exists() check followed by a rename.
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise FileExistsError(
                    f"Checkpoint {path} already exists; choose another name or overwrite."
                ) from None
            Path(temporary).unlink()
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("Saved checkpoint %s (%d tensors)", path, len(tensors))
    return path


def read_metadata(path: str | Path) -> dict:
    """Return the metadata of a checkpoint file without loading its tensors."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            raw = (file.metadata() or {}).get(METADATA_KEY)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {path} not found.") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    return _parse_header(raw, str(path))


def load_checkpoint(
    source: str | Path | bytes, *, name: str | None = None
) -> tuple[Autoencoder, dict]:
    """Load a checkpoint from a path or uploaded bytes; return (model in eval mode, metadata).

    Raises CheckpointError naming every missing, unexpected or mis-shaped tensor.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded checkpoint")
    if isinstance(source, bytes):
        blob = source
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"Checkpoint {path} not found.")
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"Checkpoint {path} is larger than 2 GiB; it was not loaded.")
        blob = path.read_bytes()
    try:
        tensors = load_bytes(blob)
        header = _header_of(blob)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{label} is not a valid safetensors checkpoint: {error}") from error
    metadata = _parse_header(header, label)
    reference = tensors.pop(REFERENCE_KEY, None)
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    try:
        # Shapes are checked on the meta device first, so metadata that describes a huge model
        # cannot make this process allocate it: only a model the file's tensors fill is built.
        with torch.device("meta"):
            skeleton = build_from_config(metadata["model"])
        _check_state(skeleton, weights, label)
        model = build_from_config(metadata["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{label} describes an invalid model: {error}") from error
    model.load_state_dict(weights, strict=True)
    model.eval()
    if reference is not None:
        if (metadata.get("anomaly") or {}).get("score") != "combined":
            raise CheckpointError(
                f"{label} has reference features but no combined anomaly statistics; it was "
                "not loaded."
            )
        rows = reference.shape[0] if reference.ndim == 2 else 0
        low, high = MIN_REFERENCE_IMAGES, MAX_REFERENCE_IMAGES
        if not low <= rows <= high or not reference.is_floating_point():
            raise CheckpointError(
                f"{label} has reference features of shape {tuple(reference.shape)} and type "
                f"{reference.dtype}; expected a float (images, features) matrix with {low} to "
                f"{high} images. It was not loaded."
            )
        metadata["anomaly"]["reference_features"] = reference.float()
    elif (metadata.get("anomaly") or {}).get("score") == "combined":
        raise CheckpointError(
            f"{label} uses the combined anomaly score but contains no reference features, so "
            "it was not loaded. Retrain the anomaly model to get a complete checkpoint."
        )
    metadata["_optimizer"] = {
        k[len(OPTIMIZER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)
    }
    return model, metadata


def restore_optimizer(optimizer: torch.optim.Optimizer, metadata: dict) -> bool:
    """Load Adam moments saved with `save_checkpoint(optimizer=...)`; return False when absent."""
    saved = metadata.get("_optimizer") or {}
    if not saved:
        return False
    state = optimizer.state_dict()
    for index in range(len(state["param_groups"][0]["params"])):
        keys = [f"{index}.{field}" for field in ("exp_avg", "exp_avg_sq", "step")]
        if not all(key in saved for key in keys):
            return False
        state["state"][index] = {
            field: saved[key]
            for field, key in zip(("exp_avg", "exp_avg_sq", "step"), keys, strict=True)
        }
    optimizer.load_state_dict(state)
    return True


def list_checkpoints(
    folders: list[Path] | None = None, *, family: str | None = None
) -> list[CheckpointInfo]:
    """Return readable checkpoints in `folders` (default: shipped, then user), sorted by name.

    Unreadable files are skipped with a warning so one bad file cannot hide the others.
    """
    found: list[CheckpointInfo] = []
    for folder in folders if folders is not None else config.checkpoint_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            try:
                metadata = read_metadata(path)
            except CheckpointError as error:
                logger.warning("Skipping checkpoint %s: %s", path, error)
                continue
            if family is None or metadata.get("family") == family:
                found.append(CheckpointInfo(path.stem, path, metadata))
    return found


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for field in ("exp_avg", "exp_avg_sq", "step"):
            if field in state:
                value = torch.as_tensor(state[field]).detach().cpu().contiguous()
                tensors[f"{OPTIMIZER_PREFIX}{index}.{field}"] = value
    return tensors


def _header_of(blob: bytes) -> str | None:
    length = int.from_bytes(blob[:8], "little")
    if length <= 0 or length > len(blob) - 8:
        raise ValueError("the header length is invalid")
    header = json.loads(blob[8 : 8 + length])
    return (header.get("__metadata__") or {}).get(METADATA_KEY)


def _parse_header(raw: str | None, label: str) -> dict:
    if raw is None:
        raise CheckpointError(f"{label} has no paintae metadata; it was not saved by paintae.")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{label} has corrupt metadata: {error}") from error
    if not isinstance(metadata, dict):
        kind = type(metadata).__name__
        raise CheckpointError(f"{label} has metadata of type {kind}, not a JSON object.")
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{label} has format {metadata.get('format')!r}, expected {FORMAT!r}."
        )
    if not isinstance(metadata.get("model"), dict) or "name" not in metadata["model"]:
        raise CheckpointError(f"{label} names no model in its metadata.")
    for key in ("data", "train_config", "history", "test_metrics", "anomaly"):
        if key in metadata and not isinstance(metadata[key], dict):
            raise CheckpointError(f"{label} has invalid metadata: {key!r} is not an object.")
    for key, value in metadata.get("test_metrics", {}).items():
        if not isinstance(value, int | float):
            raise CheckpointError(f"{label} has a non-numeric test metric {key!r}: {value!r}.")
    stats = metadata.get("anomaly", {})
    numeric = ("mean", "std", "k", "threshold", "ssim_sigma", "weight", "neighbours")
    logs = ("ssim_log_mean", "ssim_log_std", "latent_log_mean", "latent_log_std")
    for key in (*numeric, *logs):
        value = stats.get(key, 0.0)
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        if not valid or not math.isfinite(value):
            raise CheckpointError(f"{label} has a non-numeric anomaly {key!r}: {value!r}.")
    if stats.get("std", 0.0) < 0:
        raise CheckpointError(f"{label} has a negative anomaly std {stats['std']!r}.")
    if stats.get("space", "linear") not in ("linear", "log"):
        raise CheckpointError(f"{label} has an unknown anomaly space {stats['space']!r}.")
    if stats.get("score") == "combined":
        _check_combined(stats, logs, label)
    return metadata


def _check_combined(stats: dict, logs: tuple[str, ...], label: str) -> None:
    """Raise CheckpointError unless the combined-score statistics are complete and in range."""
    missing = [key for key in logs if key not in stats]
    if missing or min(stats["ssim_log_std"], stats["latent_log_std"]) < MIN_LOG_STD:
        raise CheckpointError(
            f"{label} has incomplete combined anomaly statistics (missing {missing} or a "
            f"standard deviation below {MIN_LOG_STD})."
        )
    neighbours = stats.get("neighbours", 3)
    if not 0 <= stats.get("weight", 0.25) <= 1 or not (
        isinstance(neighbours, int) and 1 <= neighbours <= 1000
    ):
        raise CheckpointError(
            f"{label} has an invalid combined weight {stats.get('weight')!r} (0 to 1) or "
            f"neighbour count {neighbours!r} (a whole number from 1 to 1000)."
        )
    if stats.get("space", "linear") != "linear":
        raise CheckpointError(
            f"{label} uses the combined score with space {stats['space']!r}; combined scores "
            "are z-scores and need the 'linear' space."
        )


def _check_state(model: Autoencoder, weights: dict[str, torch.Tensor], label: str) -> None:
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(
            f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key in sorted(set(expected) & set(weights)):
        if expected[key].shape != weights[key].shape:
            problems.append(
                f"{key} has shape {tuple(weights[key].shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    if problems:
        raise CheckpointError(
            f"{label} does not match model {model.config}: " + "; ".join(problems)
        )
