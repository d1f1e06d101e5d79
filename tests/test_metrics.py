import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from paintae import metrics
from paintae.metrics import (
    auroc,
    average_precision,
    binary_report,
    bootstrap_auroc,
    confusion_table,
    psnr,
    roc_curve,
    ssim,
)


def test_psnr_matches_formula_per_image():
    torch.manual_seed(0)
    target = torch.rand(3, 1, 16, 16)
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    values = psnr(pred, target)
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    assert values.shape == (3,)
    torch.testing.assert_close(values, 10 * torch.log10(1.0 / mse), rtol=1e-5, atol=1e-4)


def test_psnr_single_image_returns_one_value():
    target = torch.rand(3, 8, 8)
    pred = torch.zeros(3, 8, 8)
    assert psnr(pred, target).shape == (1,)


def test_psnr_identical_images_is_inf():
    image = torch.rand(1, 8, 8)
    assert math.isinf(float(psnr(image, image)[0]))


def test_ssim_per_image_matches_single_calls():
    torch.manual_seed(1)
    target = torch.rand(4, 3, 20, 20)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    batched = ssim(pred, target)
    assert batched.shape == (4,)
    for i in range(4):
        single = ssim(pred[i], target[i])
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [1.5, 3.0])
@pytest.mark.parametrize("shape", [(2, 3, 40, 33), (3, 1, 28, 28)])
def test_ssim_agrees_with_torchmetrics(sigma: float, shape: tuple[int, ...]) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    torch.manual_seed(2)
    target = torch.rand(shape)
    pred = (target + 0.15 * torch.randn_like(target)).clamp(0, 1)
    kernel = 2 * math.ceil(3 * sigma) + 1
    expected = structural_similarity_index_measure(
        pred, target, data_range=1.0, reduction="none", sigma=sigma, kernel_size=kernel
    )
    torch.testing.assert_close(ssim(pred, target, sigma=sigma), expected, atol=2e-5, rtol=0)


def test_ssim_map_shape_and_mean() -> None:
    from paintae.metrics import ssim_map

    torch.manual_seed(3)
    target = torch.rand(2, 3, 24, 30)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    local = ssim_map(pred, target, sigma=2.0)
    assert local.shape == target.shape
    torch.testing.assert_close(local.mean(dim=(1, 2, 3)), ssim(pred, target, sigma=2.0))


def test_ssim_identical_images_is_one():
    image = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(ssim(image, image), torch.ones(2), atol=1e-5, rtol=0)


def test_ssim_rejects_tiny_images():
    image = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="at least"):
        ssim(image, image)


def test_image_metrics_reject_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 8, 8), torch.rand(1, 8, 9))


def test_auroc_and_ap_match_sklearn():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 10)
    scores = rng.normal(size=40) + labels
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert 0.0 < average_precision(scores, labels) <= 1.0


def test_auroc_accepts_tensors():
    scores = torch.tensor([0.1, 0.2, 0.9, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    assert auroc(scores, labels) == pytest.approx(1.0)
    assert average_precision(scores, labels) == pytest.approx(1.0)


def test_roc_curve_ends_at_one_one():
    fpr, tpr, thresholds = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert fpr[-1] == 1.0
    assert tpr[-1] == 1.0
    assert len(fpr) == len(thresholds)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0, 1, 1], "differ in length"),
        ([], [], "empty"),
        ([0.1, 0.2], [0, 2], "0 \\(normal\\) or 1"),
        ([0.1, 0.2], [1, 1], "only class 1"),
        ([0.1, float("nan")], [0, 1], "NaN"),
    ],
)
def test_auroc_rejects_invalid_input(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        auroc(scores, labels)


def test_resampled_auroc_matches_sklearn_rows():
    rng = np.random.default_rng(3)
    # Rounded scores create ties between the classes, which count one half.
    scores = np.round(rng.normal(size=25), 1)
    labels = np.array([1] * 8 + [0] * 17)
    unique = np.unique(scores)
    bins = np.searchsorted(unique, scores)
    pos_draw = rng.integers(0, 8, size=(20, 8))
    neg_draw = rng.integers(0, 17, size=(20, 17))
    fast = metrics._resampled_auroc(
        bins[labels == 1][pos_draw], bins[labels == 0][neg_draw], unique.size
    )
    for row in range(20):
        pos_scores = scores[labels == 1][pos_draw[row]]
        neg_scores = scores[labels == 0][neg_draw[row]]
        row_labels = np.r_[np.ones(8), np.zeros(17)]
        expected = roc_auc_score(row_labels, np.r_[pos_scores, neg_scores])
        assert fast[row] == pytest.approx(expected)


def test_bootstrap_auroc_interval_contains_point():
    rng = np.random.default_rng(4)
    labels = np.array([0] * 50 + [1] * 20)
    scores = rng.normal(size=70) + 1.5 * labels
    point, low, high = bootstrap_auroc(scores, labels, n=300, seed=0)
    assert point == pytest.approx(roc_auc_score(labels, scores))
    assert low <= point <= high
    assert 0.0 <= low < high <= 1.0


def test_bootstrap_auroc_is_seeded():
    labels = [0, 0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.5, 0.3, 0.4, 0.9, 0.2, 0.6]
    assert bootstrap_auroc(scores, labels, n=200, seed=7) == bootstrap_auroc(
        scores, labels, n=200, seed=7
    )


def test_bootstrap_auroc_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        bootstrap_auroc([0.1, 0.9], [0, 1], level=1.5)


def test_binary_report_counts():
    scores = [0.9, 0.8, 0.3, 0.7, 0.1, 0.5]
    labels = [1, 1, 1, 0, 0, 0]
    report = binary_report(scores, labels, threshold=0.5)
    assert (report["tp"], report["fp"], report["tn"], report["fn"]) == (2, 1, 2, 1)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3)
    assert report["false_positive_rate"] == pytest.approx(1 / 3)


def test_binary_report_threshold_is_strict():
    report = binary_report([0.5, 0.5], [1, 0], threshold=0.5)
    assert report["tp"] == 0
    assert report["fp"] == 0


def test_binary_report_zero_division_is_zero():
    report = binary_report(np.array([0.1, 0.2]), np.array([0, 0]), threshold=1.0)
    assert report["precision"] == 0.0
    assert report["recall"] == 0.0
    assert report["f1"] == 0.0
    assert report["accuracy"] == 1.0


def test_binary_report_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        binary_report(torch.tensor([0.1, 0.2]), torch.tensor([1]), threshold=0.1)


def test_confusion_table_layout():
    table = confusion_table([0.9, 0.2, 0.8, 0.1], [1, 1, 0, 0], threshold=0.5)
    assert table == {
        "anomaly": {"flagged": 1, "not flagged": 1},
        "normal": {"flagged": 1, "not flagged": 1},
    }
