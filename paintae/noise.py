"""Synthetic corruption of clean images, used to train and evaluate the denoisers.

Every function takes float tensors in [0, 1] of any shape, returns a new tensor of the same shape
clamped to [0, 1], and leaves its input unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

NOISE_KINDS = ("gaussian", "salt_pepper", "poisson", "speckle")


def add_noise(
    x: Tensor,
    kind: str = "gaussian",
    level: float = 0.2,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Return a noisy copy of `x` (float, values in [0, 1]), clamped to [0, 1].

    kinds, with `level` in [0, 1]:
    - "gaussian": x + level * N(0, 1), so `level` is the standard deviation.
    - "salt_pepper": a fraction `level` of pixel positions is set to 0 or 1 with equal odds. For
      tensors with 3 or more dimensions a position covers all channels of dimension -3, so salt
      is white and pepper is black.
    - "poisson": photon-count noise Poisson(x / level) * level, so `level` is 1 / photons at full
      brightness and a higher level is noisier.
    - "speckle": x + level * x * N(0, 1), multiplicative noise.
    Level 0 returns a clamped copy of `x` for every kind.

    Random numbers come from `generator` if given, else from a new generator seeded with `seed`
    on x's device, else from PyTorch's global generator. The noise is drawn on the generator's
    device and moved to x's device.

    Raises ValueError for an unknown kind, a level outside [0, 1], both `generator` and `seed`,
    or a non-floating-point `x`.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"Unknown noise kind {kind!r}: use one of {NOISE_KINDS}.")
    level = float(level)
    if math.isnan(level) or not 0.0 <= level <= 1.0:
        raise ValueError(f"Invalid noise level {level} for {kind!r}: it must be in [0, 1].")
    if generator is not None and seed is not None:
        raise ValueError("Pass either a generator or a seed to add_noise, not both.")
    if not x.is_floating_point():
        raise ValueError(
            f"add_noise expects a floating-point tensor in [0, 1], got dtype {x.dtype}."
        )
    if level == 0.0:
        return x.clamp(0.0, 1.0)

    if seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    device = generator.device if generator is not None else x.device

    def standard_normal(shape: torch.Size) -> Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)

    def uniform(shape: torch.Size) -> Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)

    if kind == "gaussian":
        noisy = x + level * standard_normal(x.shape)
    elif kind == "speckle":
        noisy = x + level * x * standard_normal(x.shape)
    elif kind == "poisson":
        photons = 1.0 / level
        rate = (x.clamp(0.0, 1.0) * photons).to(device)
        noisy = torch.poisson(rate, generator=generator).to(x.device) / photons
    else:
        noisy = _salt_and_pepper(x, level, uniform)
    return noisy.clamp(0.0, 1.0)


def _salt_and_pepper(x: Tensor, level: float, uniform: Callable[[torch.Size], Tensor]) -> Tensor:
    """Set a fraction `level` of pixel positions to 0 or 1; channels share one mask."""
    mask_shape = list(x.shape)
    if x.dim() >= 3:
        mask_shape[-3] = 1
    hit = uniform(torch.Size(mask_shape)) < level
    salt = uniform(torch.Size(mask_shape)) < 0.5
    # Masks of shape (..., 1, H, W) broadcast over the channels of x.
    noisy = torch.where(hit & salt, torch.ones_like(x), x)
    return torch.where(hit & ~salt, torch.zeros_like(x), noisy)
