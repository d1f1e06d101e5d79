"""The autoencoders paintae trains, each registered by name with its family and design.

Every model takes images (N, C, H, W) in [0, 1] and returns a reconstruction of the same shape. In
eval mode every output is clamped to [0, 1]; the reference conv stack has no output activation, so
during training its raw output goes to the loss, exactly as in the reference design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

FAMILIES = ("reconstruction", "denoising", "anomaly")


class Autoencoder(nn.Module):
    """Base class: stores the JSON-able config that rebuilds the model and the size contract."""

    fully_convolutional: bool = False
    # Height and width must be multiples of this (fully convolutional models pad to it).
    size_multiple: int = 1

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = dict(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decode(self.encode(x))
        return out if self.training else out.clamp(0.0, 1.0)


class MLPAutoencoder(Autoencoder):
    """Reference MLP: flatten, Linear(in, latent) + ReLU, Linear(latent, in) + Sigmoid.

    With `hidden` set, an extra hidden layer of that width sits on each side and the latent code
    is linear (the deeper variant). With a ReLU there, latent units that die stay dead, and that
    kept the reference design near a test MSE of 0.012 at latent 64.
    """

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        channels, size, latent = config["in_channels"], config["image_size"], config["latent"]
        hidden = config.get("hidden")
        self.shape = (channels, size, size)
        features = channels * size * size
        if hidden:
            self.encoder = nn.Sequential(
                nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, latent)
            )
            self.decoder = nn.Sequential(
                nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.Sigmoid()
            )
        else:
            self.encoder = nn.Sequential(nn.Linear(features, latent), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(latent, features), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"This MLP autoencoder takes images of shape {self.shape}, "
                f"got {tuple(x.shape[1:])}; "
                "resize the images to the model's image size first."
            )
        return self.encoder(x.flatten(1))  # (N, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.shape)


class ReferenceConvAutoencoder(Autoencoder):
    """Reference stride-1 Conv/BatchNorm stack with no bottleneck and no nonlinearity.

    `latent` is the middle channel count k: 8 for gray images and 64 for colour in the reference.
    """

    fully_convolutional = True

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        channels, k = config["in_channels"], config["latent"]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.Conv2d(16, k, 3, padding=1),
            nn.BatchNorm2d(k),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(k, k, 3, padding=1),
            nn.BatchNorm2d(k),
            nn.ConvTranspose2d(k, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.Conv2d(16, channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class UNetDenoiser(Autoencoder):
    """Improved denoiser: two strided stages down to a `latent`-channel bottleneck at 1/4 size.

    Skip connections carry edges past the bottleneck and the output is the input minus a predicted
    noise image (residual learning), so the network spends its capacity on the noise alone.
    """

    fully_convolutional = True
    size_multiple = 4

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        channels, latent = config["in_channels"], config["latent"]
        width = config.get("width", 16)
        self.inc = _conv(channels, width)
        self.down1 = nn.Sequential(_conv(width, 2 * width, stride=2), _conv(2 * width, 2 * width))
        self.down2 = nn.Sequential(_conv(2 * width, latent, stride=2), _conv(latent, latent))
        self.up2 = nn.ConvTranspose2d(latent, 2 * width, 2, stride=2)
        self.merge2 = _conv(2 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge1 = _conv(width, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.down2(self.down1(self.inc(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.inc(x)  # (N, w, H, W)
        skip2 = self.down1(skip1)  # (N, 2w, H/2, W/2)
        z = self.down2(skip2)  # (N, latent, H/4, W/4)
        # Skips are added, not concatenated, which halves the cost of the merge convolutions.
        h = self.merge2(self.up2(z) + skip2)
        h = self.merge1(self.up1(h) + skip1)
        out = x - self.out(h)
        return out if self.training else out.clamp(0.0, 1.0)


class BottleneckConvAutoencoder(Autoencoder):
    """Improved anomaly model: three strided stages to a `latent`-channel map at 1/8 size, no skips.

    Without skip connections every detail has to pass the bottleneck, so textures unlike the
    training paintings reconstruct badly, which is the anomaly signal. Stages are 4x4 stride-2
    convolutions with BatchNorm and LeakyReLU(0.2), mirrored by transposed convolutions.
    """

    fully_convolutional = True
    size_multiple = 8

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        channels, latent = config["in_channels"], config["latent"]
        width = config.get("width", 32)
        widths = (width, 2 * width, 4 * width)
        encoder: list[nn.Module] = []
        previous = channels
        for out in widths:
            encoder += [nn.Conv2d(previous, out, 4, stride=2, padding=1), *_norm_act(out)]
            previous = out
        encoder.append(nn.Conv2d(previous, latent, 1))  # (N, latent, H/8, W/8)
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [nn.Conv2d(latent, widths[-1], 1), *_norm_act(widths[-1])]
        for c_in, c_out in ((widths[2], widths[1]), (widths[1], widths[0])):
            decoder += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), *_norm_act(c_out)]
        decoder += [nn.ConvTranspose2d(widths[0], channels, 4, stride=2, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _norm_act(channels: int) -> tuple[nn.Module, nn.Module]:
    return nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, inplace=True)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its builder and the description the app shows."""

    name: str
    family: str
    design: str  # "reference" or "improved"
    description: str
    builder: Callable[[dict], Autoencoder]
    default_latent: Callable[[int], int]  # in_channels -> latent
    extra: tuple[tuple[str, int], ...] = ()  # defaults for further config keys


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mlp",
            "reconstruction",
            "reference",
            "One hidden layer: Linear + ReLU encoder, Linear + Sigmoid decoder.",
            MLPAutoencoder,
            lambda channels: 64,
        ),
        ModelSpec(
            "mlp-deep",
            "reconstruction",
            "improved",
            "Two layers each side (hidden width 512) around a linear latent code.",
            MLPAutoencoder,
            lambda channels: 64,
            (("hidden", 512),),
        ),
        ModelSpec(
            "conv-ref",
            "denoising",
            "reference",
            "Stride-1 Conv/BatchNorm stack without bottleneck or nonlinearity (k channels).",
            ReferenceConvAutoencoder,
            lambda channels: 8 if channels == 1 else 64,
        ),
        ModelSpec(
            "unet",
            "denoising",
            "improved",
            "Strided encoder to a 1/4-size bottleneck, additive skips, residual output.",
            UNetDenoiser,
            lambda channels: 64,
            (("width", 16),),
        ),
        ModelSpec(
            "conv-bottleneck",
            "anomaly",
            "improved",
            "Three strided stages to a 16-channel map at 1/8 size, no skips.",
            BottleneckConvAutoencoder,
            lambda channels: 16,
            (("width", 32),),
        ),
    )
}

# The reference conv stack serves both the denoising and the anomaly task.
MODELS_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "reconstruction": ("mlp", "mlp-deep"),
    "denoising": ("conv-ref", "unet"),
    "anomaly": ("conv-ref", "conv-bottleneck"),
}


def build_model(
    name: str,
    *,
    in_channels: int,
    image_size: int,
    latent: int | None = None,
    **extra: int,
) -> Autoencoder:
    """Build a registered model with fresh weights.

    `image_size` is the square input size for MLPs and the training crop size (informational) for
    fully convolutional models. Raises ValueError for an unknown name or an invalid size.
    """
    if name not in MODEL_SPECS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_SPECS)}.")
    spec = MODEL_SPECS[name]
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels}.")
    if latent is None:
        latent = spec.default_latent(in_channels)
    if not 1 <= int(latent) <= 4096:
        raise ValueError(f"Latent size must be between 1 and 4096, got {latent}.")
    if not 4 <= int(image_size) <= 1024:
        raise ValueError(f"Image size must be between 4 and 1024 pixels, got {image_size}.")
    config = {"name": name, "in_channels": int(in_channels), "image_size": int(image_size)}
    config["latent"] = int(latent)
    for key, default in spec.extra:
        config[key] = int(extra.pop(key, default))
    if extra:
        raise ValueError(f"Model {name!r} takes no settings {sorted(extra)}.")
    return spec.builder(config)


def build_from_config(config: dict) -> Autoencoder:
    """Rebuild a model from the `config` dict stored in a checkpoint."""
    settings = {k: v for k, v in config.items() if k not in ("name", "in_channels", "image_size")}
    return build_model(
        config["name"],
        in_channels=config["in_channels"],
        image_size=config["image_size"],
        **settings,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Count multiply-accumulates of one forward pass on one image of shape (C, H, W).

    Counts Conv2d, ConvTranspose2d and Linear layers, which dominate these models.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            per_pixel = module.in_channels // module.groups * module.out_channels * kernel
            total += per_pixel * output.shape[-2] * output.shape[-1]
        elif isinstance(module, nn.ConvTranspose2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            per_pixel = module.in_channels // module.groups * module.out_channels * kernel
            total += per_pixel * inputs[0].shape[-2] * inputs[0].shape[-1]

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
