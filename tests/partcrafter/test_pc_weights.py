"""Weights folder verification (headers only, no torch), strict loading and the download guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from partcrafter_blender.inference.errors import EngineUnavailable
from partcrafter_blender.inference.partcrafter import weights as W

DIT_FILE = "transformer/diffusion_pytorch_model.safetensors"
VAE_FILE = "vae/diffusion_pytorch_model.safetensors"
DINO_FILE = "image_encoder_dinov2/model.safetensors"


def _tsv(path: Path) -> dict[str, tuple[int, ...]]:
    rows = (line.split("\t") for line in path.read_text().splitlines() if line)
    return {key: tuple(json.loads(shape)) for key, shape in rows}


@pytest.fixture
def folder(conformance, tmp_path) -> Path:
    """A writable copy of the tiny pipeline folder (weights and configs only)."""
    dest = tmp_path / "weights"
    shutil.copytree(conformance / "pipeline", dest, ignore=shutil.ignore_patterns("case_*", "*.png", "cases.json"))
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


@pytest.mark.parametrize(
    ("component", "tsv", "expected"),
    [
        ("transformer", "transformer.tsv", W.expected_transformer_tensors),
        ("vae", "vae.tsv", W.expected_vae_tensors),
        ("image_encoder_dinov2", "image_encoder.tsv", W.expected_image_encoder_tensors),
    ],
)
def test_full_size_expectations_match_the_official_keys(conformance, component, tsv, expected):
    config = json.loads((conformance / "configs" / component / "config.json").read_text())
    assert expected(config) == _tsv(conformance / "keys" / tsv)


def test_transformers5_dinov2_names_map_to_checkpoint_names(conformance):
    v5 = _tsv(conformance / "keys" / "image_encoder_transformers5_names.tsv")
    assert {W.dinov2_checkpoint_name(k): v for k, v in v5.items()} == _tsv(conformance / "keys" / "image_encoder.tsv")


def test_tiny_pipeline_folder_verifies(conformance):
    report = W.verify_weights_folder(conformance / "pipeline")
    assert report.ok, report.message()
    counts = {c.name: c.tensors for c in report.components}
    assert counts["transformer"] == 139 and counts["vae"] == 109 and counts["image_encoder_dinov2"] == 43
    assert "verifies: 291 tensors" in report.message()


def test_missing_and_misshaped_tensors_are_named(folder):
    tensors = load_file(str(folder / DIT_FILE))
    for key in ("proj_out.bias", "blocks.3.attn1.to_q.weight", "part_embedding.weight"):
        del tensors[key]
    tensors["blocks.0.norm1.weight"] = np.ones(65, np.float32)
    tensors["proj_in.weight"] = np.ones((64, 9), np.float32)
    save_file(tensors, str(folder / DIT_FILE))
    report = W.verify_weights_folder(folder)
    assert not report.ok
    message = report.message()
    assert (
        "transformer/diffusion_pytorch_model.safetensors is missing 3 tensors: "
        "part_embedding.weight, blocks.3.attn1.to_q.weight, proj_out.bias" in message
    )
    assert "2 have the wrong shape: proj_in.weight (expected [64, 8], found [64, 9])" in message
    assert "blocks.0.norm1.weight (expected [64], found [65])" in message
    assert [c.name for c in report.components if not c.ok] == ["transformer"]


def test_unexpected_tensor_and_wrong_dtype(folder):
    tensors = load_file(str(folder / VAE_FILE))
    tensors["decoder.extra.weight"] = np.zeros(3, np.float32)
    tensors["quant.bias"] = tensors["quant.bias"].astype(np.int64)
    save_file(tensors, str(folder / VAE_FILE))
    message = W.verify_weights_folder(folder).message()
    assert "vae/diffusion_pytorch_model.safetensors has 1 unexpected tensor: decoder.extra.weight" in message
    assert "not float16/bfloat16/float32: quant.bias" in message


def test_missing_file_config_and_index(folder):
    (folder / VAE_FILE).unlink()
    (folder / "scheduler" / "scheduler_config.json").unlink()
    (folder / "model_index.json").unlink()
    message = W.verify_weights_folder(folder).message()
    assert "vae/diffusion_pytorch_model.safetensors is missing." in message
    assert "scheduler/scheduler_config.json is missing." in message
    assert "model_index.json is missing" in message


def test_damaged_config_and_wrong_class(folder):
    (folder / "transformer" / "config.json").write_text("{not json")
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    vae_cfg["_class_name"] = "AutoencoderKL"
    (folder / "vae" / "config.json").write_text(json.dumps(vae_cfg))
    message = W.verify_weights_folder(folder).message()
    assert "transformer/config.json cannot be read as JSON" in message
    assert "vae/config.json describes a 'AutoencoderKL', expected a 'TripoSGVAEModel'" in message


def test_config_that_does_not_match_the_weights(folder):
    cfg = json.loads((folder / "transformer" / "config.json").read_text())
    cfg["num_layers"] = 7
    (folder / "transformer" / "config.json").write_text(json.dumps(cfg))
    message = W.verify_weights_folder(folder).message()
    assert "is missing 56 tensors: blocks.5.norm1.weight" in message  # 2 blocks of 28
    assert "has 4 unexpected tensors: blocks.3.skip_linear.bias" in message  # the middle moved


def test_truncated_download_is_detected(folder):
    path = folder / DINO_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    message = W.verify_weights_folder(folder).message()
    assert "image_encoder_dinov2/model.safetensors is truncated" in message and "interrupted download" in message
    path.write_bytes(b"\x05")
    assert "not a safetensors file" in W.verify_weights_folder(folder).message()


def test_dinov2_saved_with_transformers5_names_verifies(folder):
    tensors = load_file(str(folder / DINO_FILE))
    renamed = {k.replace(".attention.attention.query.", ".attention.q_proj."): v for k, v in tensors.items()}
    save_file(renamed, str(folder / DINO_FILE))
    assert W.verify_weights_folder(folder).ok


def test_sharded_checkpoint(folder):
    tensors = load_file(str(folder / DIT_FILE))
    names = sorted(tensors)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[:70],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[70:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / "transformer" / shard))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (folder / DIT_FILE).unlink()
    assert W.verify_weights_folder(folder).ok
    (folder / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    assert "transformer/diffusion_pytorch_model-00002-of-00002.safetensors is missing." in W.verify_weights_folder(folder).message()


def test_no_folder_and_require(tmp_path):
    assert W.verify_weights_folder(None).message().endswith("No weights folder is configured.")
    assert "does not exist" in W.verify_weights_folder(tmp_path / "absent").message()
    with pytest.raises(EngineUnavailable, match="model_index.json is missing"):
        W.require_valid_weights(tmp_path)


def test_load_strict_names_what_does_not_fit(conformance):
    torch = pytest.importorskip("torch")
    from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE

    config = json.loads((conformance / "pipeline" / "vae" / "config.json").read_text())
    tensors = W.load_component_tensors(conformance / "pipeline", "vae")
    with torch.device("meta"):
        vae = TripoSGVAE.from_config(config)
    broken = dict(tensors)
    del broken["decoder.proj_out.bias"]
    broken["post_quant.bias"] = torch.zeros(3)
    with pytest.raises(W.WeightsError) as err:
        W.load_strict(vae, broken, "vae/diffusion_pytorch_model.safetensors")
    assert "is missing 1 tensor: decoder.proj_out.bias" in str(err.value)
    assert "post_quant.bias (expected [64], found [3])" in str(err.value)
    W.load_strict(vae, tensors, "vae")  # meta module: tensors are assigned, not copied
    assert not any(p.is_meta for p in vae.parameters())
    assert torch.equal(vae.post_quant.weight, tensors["post_quant.weight"])


def test_download_refuses_without_permission(tmp_path, monkeypatch):
    commit = "0" * 40
    with pytest.raises(EngineUnavailable, match="needs online access"):
        W.download_weights(W.DEFAULT_REPO_ID, commit, tmp_path, allow_online=False)
    with pytest.raises(EngineUnavailable, match="full 40-character commit hash"):
        W.download_weights(W.DEFAULT_REPO_ID, "main", tmp_path, allow_online=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EngineUnavailable, match="HF_HUB_OFFLINE"):
        W.download_weights(W.DEFAULT_REPO_ID, commit, tmp_path, allow_online=True)
    assert not any(tmp_path.iterdir())


def test_pipeline_refuses_a_broken_folder_before_loading(folder):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from partcrafter_blender.inference.partcrafter.pipeline import PartCrafterPipeline

    tensors = load_file(str(folder / VAE_FILE))
    del tensors["decoder.proj_query.weight"]
    save_file(tensors, str(folder / VAE_FILE))
    with pytest.raises(W.WeightsError, match="vae/diffusion_pytorch_model.safetensors is missing 1 tensor: "
                                             "decoder.proj_query.weight"):
        PartCrafterPipeline.from_pretrained(folder, device="cpu")


def test_pipeline_loads_dinov2_under_either_naming(folder):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from partcrafter_blender.inference.partcrafter.pipeline import PartCrafterPipeline

    tensors = load_file(str(folder / DINO_FILE))
    renamed = {k.replace(".attention.attention.key.", ".attention.k_proj."): v for k, v in tensors.items()}
    save_file(renamed, str(folder / DINO_FILE))
    pipe = PartCrafterPipeline.from_pretrained(folder, device="cpu")
    loaded = {W.dinov2_checkpoint_name(k): v for k, v in pipe.image_encoder.state_dict().items()}
    assert loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(loaded[key], torch.from_numpy(value)), key
