"""The command line on small generated data, and every family briefly on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintae import experiments
from paintae.cli import main


def _painting_folder(root: Path, name: str, count: int, striped: bool) -> Path:
    """Write `count` 48 x 48 RGB images: smooth gradients, or high-frequency stripes."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    for index in range(count):
        ramp = np.linspace(0, 255, 48, dtype=np.float64)
        image = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1)
        image += rng.normal(0, 5, image.shape)
        if striped:
            image[:, ::2] = 255 - image[:, ::2]
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{name}_{index}.png")
    return folder


def test_cli_trains_ranks_and_denoises(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    normal = _painting_folder(tmp_path / "train", "smooth", 8, striped=False)
    out = tmp_path / "checkpoints"
    code = main(
        [
            "train",
            "--task",
            "anomaly",
            "--model",
            "conv-bottleneck",
            "--dataset",
            "paintings",
            "--folder",
            str(normal),
            "--image-size",
            "48",
            "--crop",
            "32",
            "--crops-per-epoch",
            "16",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--name",
            "tiny",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    checkpoint = out / "tiny.safetensors"
    assert checkpoint.is_file()

    mixed = tmp_path / "mixed"
    _painting_folder(mixed, "smooth", 3, striped=False)
    _painting_folder(mixed, "striped", 3, striped=True)
    csv_path = tmp_path / "ranking.csv"
    assert main(["rank", str(checkpoint), str(mixed), "--csv", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("rank,name,score,flagged")
    assert len(lines) == 7

    capsys.readouterr()
    assert main(["info", str(checkpoint)]) == 0
    metadata = json.loads(capsys.readouterr().out)
    assert metadata["family"] == "anomaly"
    assert metadata["anomaly"]["threshold"] > 0

    output = tmp_path / "clean.png"
    image = next((mixed / "smooth").iterdir())
    assert (
        main(["denoise", str(checkpoint), str(image), "--out", str(output), "--add-noise", "0.1"])
        == 0
    )
    assert Image.open(output).size == (48, 48)


def test_cli_refuses_overwrite_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _painting_folder(tmp_path, "smooth", 4, striped=False)
    args = [
        "train",
        "--model",
        "mlp",
        "--dataset",
        "paintings",
        "--folder",
        str(folder),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--name",
        "m",
        "--out",
        str(tmp_path / "ck"),
    ]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err

    assert main(["rank", str(tmp_path / "ck" / "m.safetensors"), str(folder)]) == 2
    assert "not an anomaly checkpoint" in capsys.readouterr().err

    assert main(["info", str(tmp_path / "absent.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(
            [
                "train",
                "--model",
                "mlp",
                "--dataset",
                "paintings",
                "--folder",
                str(empty),
                "--name",
                "e",
                "--out",
                str(tmp_path / "ck"),
            ]
        )
        == 2
    )
    assert "No images" in capsys.readouterr().err


@pytest.mark.slow
def test_every_experiment_runs_briefly_on_real_data(data_root: Path) -> None:
    rows = experiments.reproduce(data_root, quick=True)
    trained = [row for row in rows if row.design != "reference printout"]
    assert len(trained) == 2 * len(experiments.EXPERIMENTS)
    for row in trained:
        assert np.isfinite(row.figures["test_mse"]), row
    anomaly_rows = [row for row in trained if "auroc" in row.figures]
    assert len(anomaly_rows) == 2
    for row in anomaly_rows:
        assert 0.0 <= row.figures["auroc_low"] <= row.figures["auroc"] <= row.figures["auroc_high"]
    table = experiments.rows_to_markdown(rows)
    assert table.count("\n") == len(rows) + 2
