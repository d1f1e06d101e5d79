"""Settings shared by the app, the command line and the tests.

Paths come from arguments first, then environment variables, then per-user defaults; nothing here
assumes where the real data lives.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DATA_ENV = "PAINTAE_DATA"
CHECKPOINTS_ENV = "PAINTAE_CHECKPOINTS"
DEVICE_ENV = "PAINTAE_DEVICE"

# Limits for one decoded image and one uploaded file. 40 megapixels is a 7,000 x 5,700 photo;
# anything larger is rejected before its pixels are decoded.
MAX_IMAGE_PIXELS = 40_000_000
MAX_UPLOAD_BYTES = 50 * 2**20

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_download_root() -> Path:
    """Return the folder where Fashion-MNIST is downloaded when no data root is set."""
    return Path.home() / ".cache" / "paintae" / "data"


def data_root(explicit: str | Path | None = None) -> Path | None:
    """Return the data root: `explicit`, else $PAINTAE_DATA, else the download folder if it exists.

    Returns None when nothing is configured, so callers can tell the user what to set.
    """
    if explicit is not None and str(explicit).strip():
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    fallback = default_download_root()
    return fallback if fallback.is_dir() else None


def repo_checkpoint_dir() -> Path:
    """Return the folder of checkpoints shipped with the repository (read-only for the app)."""
    return REPO_ROOT / "checkpoints"


def user_checkpoint_dir() -> Path:
    """Return the folder where new checkpoints are saved: $PAINTAE_CHECKPOINTS or a cache folder."""
    from_env = os.environ.get(CHECKPOINTS_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "paintae" / "checkpoints"


def checkpoint_dirs() -> list[Path]:
    """Return every folder searched for checkpoints: shipped ones first, then the user's."""
    return [repo_checkpoint_dir(), user_checkpoint_dir()]


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the device to train on: `prefer` or $PAINTAE_DEVICE, else CUDA when available."""
    choice = (prefer or os.environ.get(DEVICE_ENV, "") or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {choice!r} was requested but CUDA is not available; use 'cpu'.")
    if choice != "cpu" and not choice.startswith("cuda"):
        raise ValueError(f"Invalid device {choice!r}: use 'auto', 'cpu' or 'cuda'.")
    return torch.device(choice)


def model_device(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """Return the device to run `model` on: `device` (moving the model there) or its own."""
    if device is not None:
        model.to(device)
        return torch.device(device)
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
