import csv
import io

import numpy as np
import pytest
import torch
from torch import nn

from paintae import anomaly
from paintae.anomaly import (
    RankedItem,
    rank,
    ranking_csv,
    score_images,
    score_images_loop,
    threshold_from_errors,
)


def _conv_autoencoder(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, channels, 3, padding=1),
        nn.Sigmoid(),
    )
    # Non-default running statistics, so train-mode and eval-mode outputs differ.
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _mixed_size_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shapes = [(3, 16, 16), (3, 12, 20), (3, 16, 16), (3, 12, 20), (3, 16, 16), (3, 9, 9)]
    return [torch.rand(shape, generator=generator) for shape in shapes]


def test_score_images_mse_matches_manual():
    model = _conv_autoencoder()
    images = torch.rand(5, 3, 10, 10)
    result = score_images(model, images, batch_size=2)
    with torch.no_grad():
        model.eval()
        expected = ((model(images) - images) ** 2).mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-7)
    assert result.error_maps[0].shape == (10, 10)
    assert result.error_maps[0].dtype == np.float32


@pytest.mark.parametrize("kind", ["mse", "ssim", "blur-mse"])
def test_batched_scores_match_loop(kind):
    model = _conv_autoencoder()
    model.train()
    images = _mixed_size_images()
    batched = score_images(model, images, batch_size=2, score=kind)
    looped = score_images_loop(model, images, score=kind)
    np.testing.assert_allclose(batched.scores, looped.scores, rtol=0, atol=1e-6)
    for batched_map, looped_map in zip(batched.error_maps, looped.error_maps, strict=True):
        np.testing.assert_allclose(batched_map, looped_map, rtol=0, atol=1e-6)


def test_score_images_keeps_input_order():
    images = _mixed_size_images()
    result = score_images(_conv_autoencoder(), images, batch_size=4)
    assert len(result.scores) == len(images)
    for image, error_map in zip(images, result.error_maps, strict=True):
        assert error_map.shape == tuple(image.shape[1:])


def test_score_images_reports_progress():
    calls = []
    score_images(
        _conv_autoencoder(),
        _mixed_size_images(),
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (6, 6)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_identity_model_scores_zero():
    images = torch.rand(3, 1, 8, 8)
    for kind in ("mse", "ssim", "blur-mse"):
        result = score_images(_Identity(), images, score=kind)
        np.testing.assert_allclose(result.scores, 0.0, atol=1e-5)


def test_score_images_without_maps():
    result = score_images(_Identity(), torch.rand(2, 1, 8, 8), keep_maps=False)
    assert result.error_maps == []
    assert result.scores.shape == (2,)


def test_score_images_rejects_unknown_kind():
    with pytest.raises(ValueError, match="mse, ssim, blur-mse"):
        score_images(_Identity(), torch.rand(1, 1, 8, 8), score="l1")


def test_threshold_mean_std_uses_population_std():
    errors = [1.0, 2.0, 3.0, 4.0]
    expected = 2.5 + 2.0 * np.std(errors, ddof=0)
    assert threshold_from_errors(errors, "mean_std", k=2.0) == pytest.approx(expected)


def test_threshold_percentile():
    errors = np.arange(101, dtype=float)
    assert threshold_from_errors(errors, "percentile", percentile=90.0) == pytest.approx(90.0)


def test_threshold_rejects_empty_and_unknown_method():
    with pytest.raises(ValueError, match="empty"):
        threshold_from_errors([])
    with pytest.raises(ValueError, match="mean_std, percentile"):
        threshold_from_errors([1.0], method="median")


def test_rank_orders_by_score_then_name():
    items = rank([0.2, 0.9, 0.2, 0.5], ["c.png", "a.png", "b.png", "d.png"], threshold=0.3)
    assert [item.name for item in items] == ["a.png", "d.png", "b.png", "c.png"]
    assert [item.rank for item in items] == [1, 2, 3, 4]
    assert [item.flagged for item in items] == [True, True, False, False]


def test_rank_threshold_is_strict():
    items = rank([0.3], ["x"], threshold=0.3)
    assert items[0].flagged is False


def test_rank_rejects_nan_scores():
    with pytest.raises(ValueError, match="bad.png"):
        rank([0.1, float("nan")], ["good.png", "bad.png"], threshold=0.0)


def test_ranking_csv_round_trips_awkward_names():
    names = ["comma, name.png", 'quote "x".png', "plain.png"]
    items = rank([0.3, 0.2, 0.1], names, threshold=0.15, labels=[1, 0, 0])
    rows = list(csv.reader(io.StringIO(ranking_csv(items))))
    assert rows[0] == ["rank", "name", "score", "flagged", "label"]
    assert [row[1] for row in rows[1:]] == names
    assert float(rows[1][2]) == 0.3
    assert rows[1][3] == "True"
    assert rows[3][4] == "0"


def test_ranking_csv_without_labels_has_four_columns():
    text = ranking_csv([RankedItem(rank=1, name="a", score=1.0, flagged=True)])
    assert text.splitlines()[0] == "rank,name,score,flagged"


def test_normal_statistics_log_space_threshold() -> None:
    scores = np.array([0.1, 0.2, 0.4, 0.8])
    stats = anomaly.normal_statistics(scores, score="ssim", k=1.5, space="log", ssim_sigma=3.0)
    logs = np.log(scores)
    expected = float(np.exp(logs.mean() + 1.5 * logs.std(ddof=1)))
    assert stats["threshold"] == pytest.approx(expected)
    assert anomaly.threshold_from_statistics(stats, k=0.0) == pytest.approx(np.exp(logs.mean()))
    assert anomaly.score_kwargs(stats) == {"score": "ssim", "ssim_sigma": 3.0}


def test_normal_statistics_linear_matches_reference_rule() -> None:
    scores = np.array([1.0, 2.0, 3.0])
    stats = anomaly.normal_statistics(scores, k=1.0)
    assert stats["threshold"] == pytest.approx(scores.mean() + scores.std(ddof=0))
    assert stats["space"] == "linear"


@pytest.mark.parametrize(
    ("scores", "space", "message"),
    [
        ([0.5], "linear", "at least 2"),
        ([0.0, 1.0], "log", "positive"),
        ([1.0, 2.0], "cube", "space"),
    ],
)
def test_normal_statistics_rejects_bad_input(scores: list, space: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        anomaly.normal_statistics(scores, space=space)


def _bottleneck(width: int = 8) -> nn.Module:
    from paintae.models import build_model

    torch.manual_seed(0)
    return build_model("conv-bottleneck", in_channels=3, image_size=32, latent=4, width=width)


def _smooth_images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 0.5 + 0.25
    return nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)


def _combined_reference(model: nn.Module, normal: torch.Tensor) -> dict:
    scored = score_images(model, normal, score="ssim", ssim_sigma=3.0, keep_features=True)
    assert scored.features is not None and scored.features.shape[0] == len(normal)
    return anomaly.combined_statistics(scored.scores, scored.features, k=1.0, ssim_sigma=3.0)


def test_combined_score_ranks_outlier_first() -> None:
    model = _bottleneck()
    stats = _combined_reference(model, _smooth_images(12, seed=0))
    checkerboard = ((torch.arange(32)[:, None] // 2 + torch.arange(32)[None, :] // 2) % 2).float()
    outlier = checkerboard.expand(3, 32, 32)
    test = torch.cat([_smooth_images(5, seed=1), outlier.unsqueeze(0)])
    scores = score_images(model, test, **anomaly.score_kwargs(stats)).scores
    assert int(np.argmax(scores)) == 5
    assert scores[5] > anomaly.threshold_from_statistics(stats)
    # The normal reference scores are z-scores: mean near 0 and std near 1 by construction.
    assert abs(stats["mean"]) < 0.5
    assert stats["reference_features"].shape[0] == 12


def test_combined_batched_matches_loop() -> None:
    model = _bottleneck()
    stats = _combined_reference(model, _smooth_images(6, seed=0))
    test = _smooth_images(4, seed=2)
    options = anomaly.score_kwargs(stats)
    batched = score_images(model, test, batch_size=3, **options).scores
    looped = score_images_loop(model, test, **options).scores
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-5)


def test_combined_needs_matching_reference() -> None:
    model = _bottleneck()
    stats = _combined_reference(model, _smooth_images(6, seed=0))
    with pytest.raises(ValueError, match="reference features"):
        score_images(model, _smooth_images(2, seed=1), score="combined")
    wider = _bottleneck(width=12)
    with pytest.raises(ValueError, match="do not belong together"):
        score_images(wider, _smooth_images(2, seed=1), **anomaly.score_kwargs(stats))


def test_combined_rejects_few_images() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        anomaly.combined_statistics([0.1, 0.2], np.zeros((2, 4)))
