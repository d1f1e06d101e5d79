"""Saving and loading checkpoints: round trips, atomicity and every rejected file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paintae.checkpoints import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_metadata,
    restore_optimizer,
    save_checkpoint,
    validate_name,
)
from paintae.models import build_model


def _model():
    return build_model("conv-ref", in_channels=1, image_size=28)


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    model = _model()
    path = save_checkpoint(tmp_path / "one", model, {"test_metrics": {"test_mse": 0.01}})
    loaded, metadata = load_checkpoint(path)
    assert path.name == "one.safetensors"
    assert metadata["test_metrics"]["test_mse"] == 0.01
    assert metadata["family"] == "denoising"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training


def test_checkpoint_loads_from_uploaded_bytes(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "bytes", _model(), {})
    model, metadata = load_checkpoint(path.read_bytes(), name="upload.safetensors")
    assert metadata["model"]["name"] == "conv-ref"
    assert model.config == metadata["model"]


def test_save_checkpoint_refuses_overwrite_unless_asked(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "same", _model(), {"version": 1})
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(tmp_path / "same", _model(), {"version": 2})
    assert read_metadata(tmp_path / "same.safetensors")["version"] == 1
    save_checkpoint(tmp_path / "same", _model(), {"version": 2}, overwrite=True)
    assert read_metadata(tmp_path / "same.safetensors")["version"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["same.safetensors"]


def test_load_checkpoint_rejects_shape_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", _model(), {})
    tensors = {"encoder.0.weight": torch.zeros(3, 3)}
    header = read_metadata(path)
    header["model"] = _model().config
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"paintae": json.dumps(header)})
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_load_checkpoint_names_mis_shaped_tensor(tmp_path: Path) -> None:
    model = _model()
    header = read_metadata(save_checkpoint(tmp_path / "ck", model, {}))
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["encoder.0.weight"] = torch.zeros(16, 1, 5, 5)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"paintae": json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"encoder\.0\.weight has shape \(16, 1, 5, 5\)"):
        load_checkpoint(tmp_path / "bad.safetensors")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a valid safetensors"),
        (b"\x80\x04\x95pickle-bytes", "not a valid safetensors"),
        (b"garbage" * 100, "not a valid safetensors"),
    ],
)
def test_load_checkpoint_rejects_non_safetensors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_load_checkpoint_rejects_foreign_safetensors(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="no paintae metadata"):
        load_checkpoint(tmp_path / "foreign.safetensors")


def test_load_checkpoint_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_list_checkpoints_skips_broken_files(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "good", _model(), {})
    (tmp_path / "broken.safetensors").write_bytes(b"nonsense")
    found = list_checkpoints([tmp_path])
    assert [info.name for info in found] == ["good"]
    assert list_checkpoints([tmp_path], family="anomaly") == []


def test_optimizer_state_survives_a_round_trip(tmp_path: Path) -> None:
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 28, 28)).mean().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "opt", model, {}, optimizer=optimizer)
    loaded, metadata = load_checkpoint(path)
    fresh = torch.optim.Adam(loaded.parameters())
    assert restore_optimizer(fresh, metadata)
    saved_state = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], saved_state)


@pytest.mark.parametrize("name", ["", " ", "../escape", "a/b", ".hidden", "x" * 65, "naïve"])
def test_validate_name_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid checkpoint name"):
        validate_name(name)


def test_validate_name_strips_suffix_and_spaces() -> None:
    assert validate_name(" fashion-mlp_64.safetensors ") == "fashion-mlp_64"


def test_failed_save_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path / "keep", _model(), {"version": 1})

    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("paintae.checkpoints.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "keep", _model(), {"version": 2}, overwrite=True)
    assert read_metadata(tmp_path / "keep.safetensors")["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_resolve_finds_checkpoint_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paintae.checkpoints import resolve

    monkeypatch.setenv("PAINTAE_CHECKPOINTS", str(tmp_path))
    path = save_checkpoint(tmp_path / "named", _model(), {})
    assert resolve("named") == path
    assert resolve("named.safetensors") == path
    assert resolve(path) == path
    with pytest.raises(CheckpointError, match="not found: give a file path"):
        resolve("absent")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("[1, 2]", "not a JSON object"),
        (
            '{"format": "paintae-checkpoint/1", "model": {"name": "mlp"}, "anomaly": [1]}',
            "'anomaly' is not an object",
        ),
        (
            '{"format": "paintae-checkpoint/1", "model": {"name": "mlp"}, "anomaly": {"k": "abc"}}',
            "non-numeric anomaly 'k'",
        ),
    ],
)
def test_malformed_metadata_is_a_checkpoint_error(
    tmp_path: Path, metadata: str, message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"paintae": metadata})
    with pytest.raises(CheckpointError, match=message):
        read_metadata(path)
    assert list_checkpoints([tmp_path]) == []


def test_huge_model_in_metadata_is_rejected_before_allocation(tmp_path: Path) -> None:
    header = {
        "format": "paintae-checkpoint/1",
        "model": {"name": "mlp", "in_channels": 3, "image_size": 1024, "latent": 4096},
    }
    path = tmp_path / "huge.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"paintae": json.dumps(header)})
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_checkpoint(path)


def test_second_save_without_overwrite_fails(tmp_path: Path) -> None:
    first = save_checkpoint(tmp_path / "race", _model(), {"version": 1})
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "race", _model(), {"version": 2})
    assert read_metadata(first)["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.safetensors"]


def test_validate_name_rejects_trailing_newline() -> None:
    with pytest.raises(ValueError, match="Invalid checkpoint name"):
        validate_name("abc\n.safetensors")


def _combined_stats(rows: int = 5, columns: int = 4) -> dict:
    return {
        "score": "combined",
        "space": "linear",
        "ssim_log_mean": -2.0,
        "ssim_log_std": 0.3,
        "latent_log_mean": 1.0,
        "latent_log_std": 0.2,
        "mean": 0.0,
        "std": 1.0,
        "k": 1.0,
        "threshold": 1.0,
        "reference_features": torch.arange(rows * columns, dtype=torch.float32).view(rows, -1),
    }


def test_reference_features_saved_as_tensor(tmp_path: Path) -> None:
    stats = _combined_stats()
    path = save_checkpoint(tmp_path / "anomaly", _model(), {"anomaly": stats})
    assert "reference_features" not in read_metadata(path)["anomaly"]
    assert "reference_features" in stats  # the caller's dict is left alone
    _, metadata = load_checkpoint(path)
    assert torch.equal(metadata["anomaly"]["reference_features"], stats["reference_features"])


def test_combined_checkpoint_needs_reference(tmp_path: Path) -> None:
    stats = _combined_stats()
    del stats["reference_features"]
    path = save_checkpoint(tmp_path / "anomaly", _model(), {"anomaly": stats})
    with pytest.raises(CheckpointError, match="no reference features"):
        load_checkpoint(path)
    stats = _combined_stats()
    del stats["latent_log_std"]
    path = save_checkpoint(tmp_path / "partial", _model(), {"anomaly": stats})
    with pytest.raises(CheckpointError, match="incomplete combined"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("weight", 1.5, "invalid combined"),
        ("neighbours", 0, "invalid combined"),
        ("ssim_log_std", float("nan"), "non-numeric"),
        ("threshold", float("inf"), "non-numeric"),
        ("ssim_log_std", 1e-320, "incomplete combined"),
        ("neighbours", 1.5, "whole number"),
        ("weight", True, "non-numeric"),
        ("std", -1.0, "negative"),
        ("space", "log", "linear"),
    ],
)
def test_combined_settings_out_of_range_rejected(
    tmp_path: Path, key: str, value: float, message: str
) -> None:
    stats = {**_combined_stats(), key: value}
    path = save_checkpoint(tmp_path / "anomaly", _model(), {"anomaly": stats})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("shape", [(12,), (2, 4), (2, 3, 4)])
def test_reference_of_bad_shape_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    stats = {**_combined_stats(), "reference_features": torch.zeros(shape)}
    path = save_checkpoint(tmp_path / "anomaly", _model(), {"anomaly": stats})
    with pytest.raises(CheckpointError, match="expected a float"):
        load_checkpoint(path)
