"""Tests for paintae.noise.add_noise: ranges, determinism, level 0 and input checks."""

from __future__ import annotations

import pytest
import torch

from paintae.noise import NOISE_KINDS, add_noise


@pytest.fixture
def clean() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_add_noise_clamps_to_unit_range(clean: torch.Tensor, kind: str) -> None:
    noisy = add_noise(clean, kind, 1.0, seed=3)
    assert noisy.shape == clean.shape
    assert noisy.dtype == clean.dtype
    assert noisy.min() >= 0.0
    assert noisy.max() <= 1.0


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_add_noise_is_deterministic_per_seed(clean: torch.Tensor, kind: str) -> None:
    first = add_noise(clean, kind, 0.3, seed=7)
    assert torch.equal(first, add_noise(clean, kind, 0.3, seed=7))
    assert not torch.equal(first, add_noise(clean, kind, 0.3, seed=8))


def test_add_noise_generator_matches_seed(clean: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(add_noise(clean, generator=generator), add_noise(clean, seed=5))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_add_noise_level_zero_is_identity(clean: torch.Tensor, kind: str) -> None:
    assert torch.equal(add_noise(clean, kind, 0.0, seed=1), clean)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_add_noise_changes_image(clean: torch.Tensor, kind: str) -> None:
    noisy = add_noise(clean, kind, 0.2, seed=2)
    assert (noisy - clean).abs().mean() > 0.01


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_add_noise_leaves_input_unchanged(clean: torch.Tensor, kind: str) -> None:
    before = clean.clone()
    add_noise(clean, kind, 0.5, seed=4)
    assert torch.equal(clean, before)


def test_add_noise_gaussian_level_is_std() -> None:
    flat = torch.full((1, 200, 200), 0.5)
    noisy = add_noise(flat, "gaussian", 0.1, seed=0)
    assert (noisy - flat).std().item() == pytest.approx(0.1, rel=0.05)


def test_add_noise_salt_pepper_hits_level_fraction() -> None:
    flat = torch.full((3, 200, 200), 0.5)
    noisy = add_noise(flat, "salt_pepper", 0.1, seed=0)
    hit = (noisy != 0.5).any(dim=0)
    assert hit.float().mean().item() == pytest.approx(0.1, abs=0.01)
    # Salt and pepper cover every channel, so a hit pixel is pure white or pure black.
    assert torch.all((noisy[:, hit] == 0).all(dim=0) | (noisy[:, hit] == 1).all(dim=0))


def test_add_noise_poisson_higher_level_is_noisier() -> None:
    flat = torch.full((1, 100, 100), 0.5)
    mild = (add_noise(flat, "poisson", 0.01, seed=0) - flat).std()
    strong = (add_noise(flat, "poisson", 0.2, seed=0) - flat).std()
    assert strong > 2 * mild


def test_add_noise_speckle_spares_black() -> None:
    black = torch.zeros(1, 8, 8)
    assert torch.equal(add_noise(black, "speckle", 0.5, seed=0), black)


def test_add_noise_rejects_unknown_kind(clean: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="'blur'.*gaussian"):
        add_noise(clean, "blur")


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan")])
def test_add_noise_rejects_level_outside_unit_range(clean: torch.Tensor, level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        add_noise(clean, "gaussian", level)


def test_add_noise_rejects_generator_with_seed(clean: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="not both"):
        add_noise(clean, generator=torch.Generator(), seed=1)


def test_add_noise_rejects_integer_tensor() -> None:
    with pytest.raises(ValueError, match="torch.uint8"):
        add_noise(torch.zeros(3, 4, 4, dtype=torch.uint8))
