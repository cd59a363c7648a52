"""Regenerating some parts on the tiny conformance pipeline (CPU): kept parts follow their
stored latents (inpainting for rectified flow), only the regenerated parts are new and decoded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from partcrafter_blender.inference import part_name  # part_01 for index 0: one naming for every engine
from partcrafter_blender.inference import GenerationRequest, InputImageError  # noqa: E402
from partcrafter_blender.inference.images import load_image  # noqa: E402
from partcrafter_blender.inference.partcrafter.engine import PartCrafterEngine  # noqa: E402
from partcrafter_blender.inference.partcrafter.geometry import GeometrySettings, extract_part_meshes  # noqa: E402
from partcrafter_blender.inference.partcrafter.inpaint import KeptLatents, regenerate_parts  # noqa: E402
from partcrafter_blender.inference.partcrafter.pipeline import PartCrafterPipeline  # noqa: E402
from partcrafter_blender.inference.partstate import RegenerationDataError, load_state  # noqa: E402

CALL = dict(num_inference_steps=4, guidance_scale=7.0, num_tokens=64)
GEOMETRY = GeometrySettings(dense_depth=4, hierarchical_depth=5, max_expanded_coords=10**9)
FAST = {"device": "cpu", "num_tokens": 64, "dense_depth": 4, "hierarchical_depth": 5}


@pytest.fixture(scope="module")
def pipe(conformance):
    return PartCrafterPipeline.from_pretrained(conformance / "pipeline", device="cpu")


@pytest.fixture(scope="module")
def image(conformance):
    return load_image(conformance / "pipeline" / "robot_np3.png")


@pytest.fixture(scope="module")
def original(pipe, image):
    return pipe(image.rgba, 4, seed=1, **CALL, geometry=GEOMETRY)


def _same_mesh(a, b) -> bool:
    return np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def test_kept_parts_identical_regenerated_ones_new(pipe, original, monkeypatch):
    import partcrafter_blender.inference.partcrafter.inpaint as inpaint

    decoded = []

    def counting(vae, latents, **kwargs):
        decoded.append(latents.shape[0])
        return extract_part_meshes(vae, latents, **kwargs)

    monkeypatch.setattr(inpaint, "extract_part_meshes", counting)
    out = regenerate_parts(pipe, original.image_embeds[:1], original.latents, [2], seed=99,
                           num_inference_steps=4, guidance_scale=7.0, geometry=GEOMETRY)
    assert decoded == [1], "only the regenerated part is decoded"
    assert out.latents.shape == original.latents.shape  # the part count stays the same
    for kept in (0, 1, 3):
        assert torch.equal(out.latents[kept], original.latents[kept])
    assert not torch.allclose(out.latents[2], original.latents[2], atol=1e-3)
    assert len(out.meshes) == 1 and out.meshes[0] is not None
    assert not _same_mesh(out.meshes[0], original.meshes[2])
    # The kept parts' meshes are what their (identical) latents decode to: the original meshes.
    again = extract_part_meshes(pipe.vae, out.latents[[0]], settings=GEOMETRY)
    assert _same_mesh(again[0], original.meshes[0])


def test_kept_rows_follow_the_flow_towards_their_clean_latents():
    clean = torch.randn(3, 5, 2)
    keep = KeptLatents(clean, [1], seed=4)
    free = torch.full((3, 5, 2), 7.0)
    start = keep(free, torch.tensor(1.0))
    assert torch.equal(start[0], keep.noise[0]) and torch.equal(start[1], free[1])
    middle = keep(free, torch.tensor(0.25))
    assert torch.allclose(middle[2], 0.75 * clean[2] + 0.25 * keep.noise[2])
    assert torch.equal(keep(free, torch.tensor(0.0))[0], clean[0])


def test_bad_part_numbers_are_refused(pipe, original):
    with pytest.raises(InputImageError, match="part 5 does not exist"):
        regenerate_parts(pipe, original.image_embeds[:1], original.latents, [4], seed=1, num_inference_steps=1,
                         guidance_scale=7.0)


def test_engine_keeps_a_sidecar_and_regenerates_from_it(conformance, image, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(conformance / "pipeline"))
    engine = PartCrafterEngine()

    def request(seed, **options):
        return GenerationRequest(image=image.rgba, image_name="robot", num_parts=3, seed=seed, steps=3,
                                 options={**FAST, "state_dir": str(tmp_path), **options})

    first = engine.generate(request(2))
    arrays, meta = load_state(first.metadata["state_file"], first.metadata["state_sha256"])
    assert arrays["latents"].shape == (3, 64, 8) and arrays["image"].shape == image.rgba.shape
    assert meta["engine"] == "partcrafter"
    again = engine.generate(request(8, regenerate_from=first.metadata["state_file"],
                                    regenerate_sha256=first.metadata["state_sha256"], regenerate_parts=[0]))
    assert [p.name for p in again.parts] == [part_name(0)] and again.metadata["regenerated_parts"] == [0]
    assert again.seed == 8 and again.metadata["num_parts"] == 3
    assert not _same_mesh(again.parts[0], first.parts[0])
    new_arrays, _ = load_state(again.metadata["state_file"], again.metadata["state_sha256"])
    assert np.array_equal(new_arrays["latents"][1:], arrays["latents"][1:])
    assert not np.array_equal(new_arrays["latents"][0], arrays["latents"][0])
    sidecar = {"regenerate_from": first.metadata["state_file"], "regenerate_sha256": first.metadata["state_sha256"],
               "regenerate_parts": [0]}
    with pytest.raises(InputImageError, match="Regenerating parts makes one result; set Variants to 1"):
        engine.generate(dataclasses.replace(request(8, **sidecar), variants=2))
    variants = engine.generate(dataclasses.replace(request(4), variants=2))
    assert variants.variant_seeds == [4, 5] and "state_file" not in variants.metadata  # the sidecar holds one object


def test_missing_or_changed_sidecar_is_said_clearly(tmp_path):
    from partcrafter_blender.inference.partstate import save_state

    path, sha = save_state(tmp_path, {"latents": np.zeros((2, 3), np.float32)}, {"engine": "partcrafter"})
    assert oct(__import__("os").stat(path).st_mode & 0o777) == "0o600"
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(RegenerationDataError, match="has changed since the result was made"):
        load_state(path, sha)
    with pytest.raises(RegenerationDataError, match="is missing"):
        load_state(tmp_path / "gone.npz", sha)
    with pytest.raises(RegenerationDataError, match="has no regeneration data"):
        load_state("", "")
