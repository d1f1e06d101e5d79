import pytest
import torch
from torch import nn

from paintae.denoise import CLASSICAL_METHODS, classical_denoise, denoise_image


class _ConvModel(nn.Module):
    """A fully convolutional test model: one conv layer and a sigmoid."""

    fully_convolutional = True

    def __init__(self, channels: int = 3, kernel_size: int = 1, size_multiple: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.size_multiple = size_multiple
        self.config = {"in_channels": channels, "image_size": 32}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(f"input {tuple(x.shape)} is not a multiple of {self.size_multiple}")
        return torch.sigmoid(self.conv(x))


class _IdentityModel(nn.Module):
    fully_convolutional = True

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.config = {"in_channels": channels, "image_size": 16}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _DenseModel(nn.Module):
    """A model that only accepts 1 x 8 x 8 inputs, like the reference MLP."""

    fully_convolutional = False

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Sigmoid())
        self.config = {"in_channels": 1, "image_size": 8}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape)


def _noisy_image(channels: int = 3, size: int = 32, level: float = 0.1) -> tuple:
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, size)
    clean = (0.25 + 0.5 * ramp[None, :] * ramp[:, None]).expand(channels, size, size).clone()
    noisy = (clean + level * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return clean, noisy


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
@pytest.mark.parametrize("channels", [1, 3])
def test_classical_denoise_reduces_error(method, channels):
    clean, noisy = _noisy_image(channels)
    output = classical_denoise(noisy, method, noise_level=0.1)
    assert output.shape == noisy.shape
    assert output.dtype == torch.float32
    assert float(output.min()) >= 0.0
    assert float(output.max()) <= 1.0
    noisy_error = float(((noisy - clean) ** 2).mean())
    output_error = float(((output - clean) ** 2).mean())
    assert output_error < noisy_error


def test_nl_means_estimates_sigma_when_level_unknown():
    clean, noisy = _noisy_image(3)
    output = classical_denoise(noisy, "nl_means", noise_level=None)
    assert float(((output - clean) ** 2).mean()) < float(((noisy - clean) ** 2).mean())


def test_classical_denoise_rejects_unknown_method():
    with pytest.raises(ValueError, match="gaussian, median, nl_means"):
        classical_denoise(torch.rand(1, 8, 8), "bilateral", 0.1)


def test_tiled_matches_whole_for_pixelwise_model():
    model = _ConvModel(kernel_size=1)
    image = torch.rand(3, 70, 45)
    with torch.no_grad():
        expected = model(image.unsqueeze(0))[0]
    tiled = denoise_image(model, image, tile=16, overlap=4)
    torch.testing.assert_close(tiled, expected, atol=1e-6, rtol=0)


def test_tiled_close_to_whole_for_3x3_model():
    model = _ConvModel(kernel_size=3)
    image = torch.rand(3, 40, 40)
    whole = denoise_image(model, image, tile=64)
    tiled = denoise_image(model, image, tile=16, overlap=4)
    assert tiled.shape == whole.shape
    # Only pixels at tile borders see different padding, and the ramps down-weight them.
    assert float((tiled - whole).abs().mean()) < 0.01


def test_size_multiple_pads_and_crops():
    model = _ConvModel(kernel_size=3, size_multiple=4)
    image = torch.rand(3, 37, 53)
    whole = denoise_image(model, image, tile=256)
    tiled = denoise_image(model, image, tile=20, overlap=5)
    assert whole.shape == (3, 37, 53)
    assert tiled.shape == (3, 37, 53)


def test_dense_model_resizes_and_restores_size():
    image = torch.rand(1, 20, 30)
    output = denoise_image(_DenseModel(), image)
    assert output.shape == (1, 20, 30)


def test_dense_model_converts_rgb_to_gray():
    output = denoise_image(_DenseModel(), torch.rand(3, 12, 12))
    assert output.shape == (3, 12, 12)
    torch.testing.assert_close(output[0], output[1])


def test_rgb_model_on_gray_image_round_trips():
    image = torch.rand(1, 10, 10)
    output = denoise_image(_IdentityModel(channels=3), image)
    assert output.shape == (1, 10, 10)
    torch.testing.assert_close(output, image, atol=1e-6, rtol=0)


def test_denoise_image_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        denoise_image(_IdentityModel(1), torch.rand(1, 8, 8), tile=8, overlap=8)
