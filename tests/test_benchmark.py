"""scripts/benchmark.py in --quick mode on the real data: output files and their keys.

No timing is asserted: the figures depend on the machine and its load.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paintae import benchmarking

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.realdata
@pytest.mark.slow
def test_benchmark_quick_writes_every_section(data_root: Path, tmp_path: Path) -> None:
    script = _load_script()
    out = tmp_path / "out"
    code = script.main(
        [
            "--quick",
            "--data-root",
            str(data_root),
            "--checkpoints",
            str(tmp_path / "no-shipped-checkpoints"),
            "--standin-dir",
            str(tmp_path / "standins"),
            "--out-dir",
            str(out),
        ]
    )
    assert code == 0

    results = json.loads((out / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    for key in ("format", "command", "quick", "machine", "checkpoints", "targets", "results"):
        assert key in results
    assert results["quick"] is True
    for key in ("cpu_model", "cores", "torch", "torch_threads", "date"):
        assert key in results["machine"]

    assert set(results["sections"]) == set(script.SECTIONS)
    for section in results["sections"].values():
        assert section["tables"], section["title"]
    record_keys = {"section", "figure", "design", "value", "unit", "baseline", "ratio"}
    assert results["results"]
    for item in results["results"]:
        assert record_keys <= set(item)
    assert all(origin != "missing" for origin in results["checkpoints"].values())

    page = (out / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "scripts/benchmark.py" in page
    for plot in ("q1-fashion-denoising.png", "q3-mlp-latent.png", "s2-anomaly-auroc.png"):
        assert (out / "docs" / "img" / plot).is_file()


def test_record_ratio_and_difference() -> None:
    item = benchmarking.record("s4", "rate", 30.0, "images/s", baseline="loop", baseline_value=3.0)
    assert item["ratio"] == 10.0
    assert item["difference"] == 27.0
    missing = benchmarking.record("s2", "seconds", None, "s", baseline_value=3.0)
    assert missing["ratio"] is None


def test_linear_training_flops_counts_three_passes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 784))
    assert benchmarking.linear_training_flops(model) == 3 * 2 * (784 * 64 + 64 * 784)


def test_colour_features_shape_and_saturation() -> None:
    gray = torch.full((1, 3, 8, 8), 0.5)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    features = benchmarking.colour_features(torch.cat([gray, red]))
    assert features.shape == (2, 6 + benchmarking.SATURATION_BINS)
    assert features[0, 6] == pytest.approx(1.0)  # gray: all pixels in the lowest saturation bin
    assert features[1, -1] == pytest.approx(1.0)  # pure red: all in the highest bin


def test_high_frequency_energy_ranks_texture_higher() -> None:
    smooth = torch.linspace(0, 1, 32).repeat(1, 3, 32, 1)
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2] = 1.0
    energy = benchmarking.high_frequency_energy(torch.cat([smooth, stripes]))
    assert energy[1] > 10 * energy[0]


def test_mahalanobis_scores_grow_with_distance() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 3))
    scores = benchmarking.mahalanobis_scores(reference, np.array([[0.0, 0, 0], [5.0, 5, 5]]))
    assert scores[1] > scores[0]


def test_text_table_formats_cells() -> None:
    table = benchmarking.text_table(["a", "b"], [[1.23456, None], [np.float32(2.0), True]])
    assert "1.235" in table
    assert "-" in table
    assert "yes" in table
