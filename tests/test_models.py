"""Shapes, ranges, registry errors and cost counting of the registered autoencoders."""

from __future__ import annotations

import pytest
import torch

from paintae.models import (
    MODEL_SPECS,
    MODELS_BY_FAMILY,
    build_from_config,
    build_model,
    count_macs,
    count_parameters,
)

CASES = [
    ("mlp", 1, 28),
    ("mlp", 3, 32),
    ("mlp-deep", 1, 28),
    ("conv-ref", 1, 28),
    ("conv-ref", 3, 40),
    ("unet", 1, 28),
    ("unet", 3, 64),
    ("conv-bottleneck", 3, 64),
]


@pytest.mark.parametrize(("name", "channels", "size"), CASES)
def test_model_output_matches_input_shape_and_range(name: str, channels: int, size: int) -> None:
    model = build_model(name, in_channels=channels, image_size=size).eval()
    x = torch.rand(2, channels, size, size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape
    assert y.min() >= 0.0
    assert y.max() <= 1.0


@pytest.mark.parametrize(("name", "channels", "size"), CASES)
def test_model_rebuilds_from_its_config(name: str, channels: int, size: int) -> None:
    model = build_model(name, in_channels=channels, image_size=size)
    twin = build_from_config(model.config)
    assert twin.config == model.config
    assert count_parameters(twin) == count_parameters(model)


def test_mlp_reference_layers_follow_the_design() -> None:
    model = build_model("mlp", in_channels=1, image_size=28, latent=64)
    layers = [type(m).__name__ for m in model.modules() if len(list(m.children())) == 0]
    assert layers == ["Linear", "ReLU", "Linear", "Sigmoid"]
    assert count_parameters(model) == 784 * 64 + 64 + 64 * 784 + 784


def test_mlp_rejects_wrong_image_size() -> None:
    model = build_model("mlp", in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 1, 32, 32))


def test_conv_ref_uses_reference_channel_counts() -> None:
    gray = build_model("conv-ref", in_channels=1, image_size=28)
    colour = build_model("conv-ref", in_channels=3, image_size=256)
    assert gray.config["latent"] == 8
    assert colour.config["latent"] == 64
    assert count_macs(colour, (3, 256, 256)) == pytest.approx(3.68e9, rel=0.01)


def test_fully_convolutional_models_take_any_multiple_size() -> None:
    model = build_model("conv-bottleneck", in_channels=3, image_size=64).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 48, 80)).shape == (1, 3, 48, 80)


def test_build_model_rejects_unknown_name_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        build_model("nope", in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="in_channels"):
        build_model("mlp", in_channels=2, image_size=28)
    with pytest.raises(ValueError, match="Latent size"):
        build_model("mlp", in_channels=1, image_size=28, latent=0)
    with pytest.raises(ValueError, match="takes no settings"):
        build_model("mlp", in_channels=1, image_size=28, width=3)


def test_every_family_lists_registered_models() -> None:
    for family, names in MODELS_BY_FAMILY.items():
        assert names, family
        for name in names:
            assert name in MODEL_SPECS
