"""Streamlit widgets the pages share: checkpoint pickers, cached loaders, uploads and messages.

This is the only module of the package that imports Streamlit. Functions here draw and cache;
the computations they show come from `paintae.workbench` and the other modules.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st
import torch

from paintae import checkpoints, config, data, workbench
from paintae.checkpoints import CheckpointError, CheckpointInfo
from paintae.jobs import REGISTRY, JobRegistry, TrainingJob
from paintae.models import MODEL_SPECS, Autoencoder

logger = logging.getLogger(__name__)

# Size limit shown by every uploader, in megabytes; .streamlit/config.toml sets the same value.
MAX_UPLOAD_MB = config.MAX_UPLOAD_BYTES // 2**20
JOBS_KEY = "paintae_jobs"
T = TypeVar("T")


def choose(container, label: str, choices: dict[str, T], *, key: str, index: int = 0, **kw) -> T:
    """Draw a select box of the labels of `choices` and return the chosen value.

    Options are the label strings themselves (no format_func), so the value a browser test or
    AppTest sets is exactly the text shown.
    """
    labels = list(choices)
    picked = container.selectbox(label, labels, index=min(index, len(labels) - 1), key=key, **kw)
    return choices[picked]


def setup_page(title: str, intro: str) -> None:
    """Draw the page title and a one-line description under it."""
    st.title(title)
    st.caption(intro)


# -- checkpoints -----------------------------------------------------------------------------


def checkpoint_label(info: CheckpointInfo) -> str:
    """Return "name (model, latent N, shipped|yours)" for a picker."""
    model = info.metadata.get("model", {})
    origin = "shipped" if info.shipped else "yours"
    return f"{info.name} ({model.get('name', '?')}, latent {model.get('latent', '?')}, {origin})"


def checkpoint_picker(
    family: str, *, key: str, label: str = "Checkpoint", channels: int | None = None
) -> CheckpointInfo | None:
    """Draw a select box of the checkpoints of `family`; return the chosen one or None.

    Checkpoints of models with `channels` input channels (1 gray, 3 colour) are listed first, and
    within those the improved designs before the reference ones, so the default pick is the best
    model for the image. With none found it shows where checkpoints come from and how to make one.
    """
    found = checkpoints.list_checkpoints(family=family)

    def order(info: CheckpointInfo) -> tuple[bool, bool]:
        model = info.metadata["model"]
        spec = MODEL_SPECS.get(model.get("name", ""))
        other_channels = channels is not None and model.get("in_channels") != channels
        return other_channels, spec is None or spec.design != "improved"

    found.sort(key=order)
    if not found:
        st.sidebar.info(
            f"No {family} checkpoints found in {config.repo_checkpoint_dir()} or "
            f"{config.user_checkpoint_dir()}. Train a {family!r} model on the Train page "
            "and save it, and it appears here."
        )
        return None
    return choose(st.sidebar, label, {checkpoint_label(info): info for info in found}, key=key)


@st.cache_resource(max_entries=8, show_spinner="Loading checkpoint ...")
def _load_cached(path: str, mtime_ns: int) -> tuple[Autoencoder, dict]:
    model, metadata = checkpoints.load_checkpoint(path)
    metadata.pop("_optimizer", None)  # Adam moments are not needed for inference
    return model, metadata


def load_model(info: CheckpointInfo, family: str) -> tuple[Autoencoder, dict] | None:
    """Load a checkpoint (cached per path and modification time) and check its family.

    Shows an error and returns None for an unreadable file or another family. The cached model
    is shared between sessions, so callers only run it in eval mode and never train it.
    """
    try:
        mtime = info.path.stat().st_mtime_ns
        model, metadata = _load_cached(str(info.path), mtime)
    except (CheckpointError, OSError) as error:
        st.error(f"Checkpoint {info.name} could not be loaded: {error}")
        return None
    if metadata.get("family") != family:
        st.error(
            f"Checkpoint {info.name} is a {metadata.get('family')!r} model, but this page needs "
            f"a {family!r} model. Pick another checkpoint."
        )
        return None
    return model, metadata


_shared_cache: OrderedDict[tuple, object] = OrderedDict()
_shared_cache_lock = threading.Lock()


def shared_cached(name: str, key: tuple, compute: Callable[[], T], max_entries: int = 2) -> T:
    """Return `compute()` cached for every session of this process under (name, key).

    For results that are large (image arrays) or whose computation draws a progress bar, which
    st.cache_data cannot pickle and st.cache_resource cannot replay. The least recently used
    entries beyond `max_entries` per name are dropped. Callers must not modify the result.
    """
    full_key = (name, *key)
    with _shared_cache_lock:
        if full_key in _shared_cache:
            _shared_cache.move_to_end(full_key)
            return _shared_cache[full_key]
    value = compute()  # outside the lock, so one slow computation does not block other pages
    with _shared_cache_lock:
        _shared_cache[full_key] = value
        same_name = [k for k in _shared_cache if k[0] == name]
        for old in same_name[: max(0, len(same_name) - max_entries)]:
            del _shared_cache[old]
    return value


# -- data ------------------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Loading Fashion-MNIST ...")
def fashion_mnist_test(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the Fashion-MNIST test split (images (N, 1, 28, 28), labels (N,)) from `root`."""
    return data.load_fashion_mnist("test", root)


def uploaded_files(files: object) -> list[tuple[str, bytes]]:
    """Return (name, bytes) pairs from a file_uploader value (None, one file or a list)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [(item.name, item.getvalue()) for item in items]


def show_image(container, x: torch.Tensor, caption: str) -> None:
    """Draw one (C, H, W) image in `container`, enlarging tiny images so pixels stay visible."""
    container.image(workbench.display(workbench.upscale_for_display(x)), caption=caption)


def show_skipped(skipped: list[tuple[str, str]]) -> None:
    """Warn about files that were not used, naming each one and the reason."""
    if not skipped:
        return
    lines = "\n".join(f"- **{name}**: {reason}" for name, reason in skipped[:50])
    more = f"\n- ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
    st.warning(f"{len(skipped)} file(s) were skipped:\n{lines}{more}")


def show_error(error: BaseException, what: str) -> None:
    """Show an expected error as a message (never a traceback) and log it."""
    logger.warning("%s: %s", what, error)
    st.error(f"{what}: {error}")


def data_root_caption(root: Path | None) -> None:
    if root is None:
        st.sidebar.caption(f"No data root: set {config.DATA_ENV} to use server-side data.")
    else:
        st.sidebar.caption(f"Data root: `{root}`")


# -- jobs ------------------------------------------------------------------------------------


def session_jobs() -> list[TrainingJob]:
    """Return this browser session's training jobs, oldest first."""
    return st.session_state.setdefault(JOBS_KEY, [])


def job_registry() -> JobRegistry:
    """Return the process-wide registry that limits concurrently running jobs."""
    return REGISTRY
