"""The VAE module's state dict is exactly the published checkpoint's (keys/vae.tsv)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE, VAEConfig


def _read_tsv(path) -> list[tuple[str, list[int]]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        key, shape = line.split("\t")
        rows.append((key, json.loads(shape)))
    return rows


def test_full_size_vae_matches_published_keys_and_shapes(conformance):
    config = json.loads((conformance / "configs" / "vae" / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        vae = TripoSGVAE.from_config(config)
    mine = [(key, list(t.shape)) for key, t in vae.state_dict().items()]
    assert mine == _read_tsv(conformance / "keys" / "vae.tsv")


@pytest.mark.parametrize("folder", ["vae", "pipeline/vae"])
def test_tiny_vae_checkpoint_loads_strictly(conformance, folder):
    config = json.loads((conformance / folder / "config.json").read_text(encoding="utf-8"))
    vae = TripoSGVAE.from_config(config)
    result = vae.load_state_dict(load_file(conformance / folder / "diffusion_pytorch_model.safetensors"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_config_ignores_bookkeeping_keys_and_rejects_unknown_ones():
    cfg = VAEConfig.from_dict({"_class_name": "TripoSGVAEModel", "_diffusers_version": "0.34.0", "width_decoder": 64})
    assert cfg.width_decoder == 64 and cfg.embed_dim == 51
    with pytest.raises(ValueError, match="Unknown keys in the VAE config: use_flash"):
        VAEConfig.from_dict({"width_decoder": 64, "use_flash": True})
    with pytest.raises(ValueError, match="embedding_type"):
        VAEConfig.from_dict({"embedding_type": "learned"})
