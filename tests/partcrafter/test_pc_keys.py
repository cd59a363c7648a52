"""State-dict names and shapes of the full-size models (meta device) against conformance keys/,
and strict loading of the image encoder under either transformers naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from partcrafter_blender.inference.errors import EngineUnavailable  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.image_encoder import (  # noqa: E402
    build_image_encoder,
    canonical_name,
    encode_image,
    load_image_encoder,
)


def _tsv(path: Path) -> list[tuple[str, list[int]]]:
    rows = []
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        rows.append((key, json.loads(shape)))
    return rows


def _shapes(module: torch.nn.Module) -> list[tuple[str, list[int]]]:
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


def test_full_size_transformer_keys_and_shapes(conformance: Path) -> None:
    config = json.loads((conformance / "configs" / "transformer" / "config.json").read_text())
    with torch.device("meta"):
        model = PartCrafterDiT.from_config(config)
    expected = _tsv(conformance / "keys" / "transformer.tsv")
    assert len(expected) == 555
    assert _shapes(model) == expected  # same names, shapes and order


def test_full_size_image_encoder_keys_and_shapes(conformance: Path) -> None:
    config = json.loads((conformance / "configs" / "image_encoder_dinov2" / "config.json").read_text())
    model = build_image_encoder(config, device="meta")
    got = _shapes(model)
    checkpoint = _tsv(conformance / "keys" / "image_encoder.tsv")
    assert len(checkpoint) == 439
    assert [(canonical_name(k), s) for k, s in got] == checkpoint
    in_memory_v5 = _tsv(conformance / "keys" / "image_encoder_transformers5_names.tsv")
    assert got in (checkpoint, in_memory_v5)  # whichever transformers major version is installed


@pytest.fixture(scope="module")
def tiny_encoder_dir(conformance: Path) -> Path:
    return conformance / "pipeline" / "image_encoder_dinov2"


def _copy_with(tmp_path: Path, src: Path, state: dict[str, torch.Tensor]) -> Path:
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_checkpoint_in_either_naming_loads_to_the_same_model(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    legacy = load_file(str(tiny_encoder_dir / "model.safetensors"))
    assert any(".attention.attention.query." in k for k in legacy)
    v5 = {
        k.replace(".attention.attention.query.", ".attention.q_proj.")
        .replace(".attention.attention.key.", ".attention.k_proj.")
        .replace(".attention.attention.value.", ".attention.v_proj.")
        .replace(".attention.output.dense.", ".attention.o_proj."): v
        for k, v in legacy.items()
    }
    a = load_image_encoder(tiny_encoder_dir)
    b = load_image_encoder(_copy_with(tmp_path, tiny_encoder_dir, v5))
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(encode_image(a, pixels), encode_image(b, pixels), atol=0, rtol=0)
    assert encode_image(a, pixels).shape == (1, 257, 32)


def test_mismatched_checkpoint_names_every_problem(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    state = load_file(str(tiny_encoder_dir / "model.safetensors"))
    del state["layernorm.bias"]
    state["encoder.layer.9.extra.weight"] = torch.zeros(2)
    state["embeddings.cls_token"] = torch.zeros(1, 1, 31)
    with pytest.raises(EngineUnavailable) as info:
        load_image_encoder(_copy_with(tmp_path, tiny_encoder_dir, state))
    message = str(info.value)
    assert "1 missing: layernorm.bias" in message
    assert "1 unexpected: encoder.layer.9.extra.weight" in message
    assert "1 wrong shape: embeddings.cls_token [1, 1, 31] (expected [1, 1, 32])" in message


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="config.json"):
        load_image_encoder(tmp_path)
