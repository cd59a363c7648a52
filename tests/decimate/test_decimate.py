"""The polygon budget's quadric decimation (inference/decimate.py) on marching-cubes parts,
the kind of mesh the PartCrafter engine reduces: count, topology, shape and triangle shape."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from skimage import measure

from partcrafter_blender.inference.decimate import (
    decimate,
    flip_slivers,
    is_closed_and_oriented,
    part_targets,
    triangle_quality,
)

MIN_QUALITY = 0.1  # the worst triangle after a 10x reduction (marching cubes' own: ~0.0004)


def marching_cubes_part(n: int = 96, wobble: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """A closed, outward-facing, lumpy ellipsoid (a part as the engine's marching cubes makes it)."""
    x = np.linspace(-1.0, 1.0, n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    field = np.sqrt((X / 0.8) ** 2 + (Y / 0.5) ** 2 + (Z / 0.6) ** 2) - 1.0 + wobble * np.sin(6 * X) * np.cos(5 * Y)
    vertices, faces, _, _ = measure.marching_cubes(field, 0.0, spacing=(x[1] - x[0],) * 3)
    return (vertices - 1.0).astype(np.float32), faces.astype(np.int32)


@pytest.fixture(scope="module")
def part():
    return marching_cubes_part()


def chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = 20_000) -> float:
    """Symmetric Chamfer distance: the mean of both directions' mean nearest-point distances."""
    pa = trimesh.sample.sample_surface(a, samples, seed=1)[0]
    pb = trimesh.sample.sample_surface(b, samples, seed=2)[0]
    return 0.5 * (cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean())


def test_the_input_is_a_closed_oriented_part(part):
    vertices, faces = part
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and is_closed_and_oriented(faces)
    assert len(faces) > 30_000


@pytest.mark.parametrize("reduction", [10, 50])
def test_decimation_meets_the_target_and_keeps_the_part_closed_and_oriented(part, reduction):
    vertices, faces = part
    target = len(faces) // reduction
    out = decimate(vertices, faces, target)
    assert abs(len(out.faces) - target) <= 0.05 * target
    mesh = trimesh.Trimesh(out.vertices, out.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and is_closed_and_oriented(out.faces)
    full = trimesh.Trimesh(vertices, faces, process=False)
    assert np.sign(mesh.volume) == np.sign(full.volume)  # same side out
    assert out.input_triangles == len(faces)


def test_ten_times_fewer_triangles_stay_within_half_a_percent_of_the_shape(part):
    vertices, faces = part
    out = decimate(vertices, faces, len(faces) // 10)
    full = trimesh.Trimesh(vertices, faces, process=False)
    size = float(np.linalg.norm(full.extents))
    distance = chamfer(full, trimesh.Trimesh(out.vertices, out.faces, process=False))
    print(f"symmetric Chamfer at 10x: {distance / size:.5%} of the part's diagonal")
    assert distance < 0.005 * size


def test_no_slivers_after_a_ten_times_reduction(part):
    vertices, faces = part
    out = decimate(vertices, faces, len(faces) // 10)
    quality = triangle_quality(out.vertices, out.faces)
    print(f"min triangle quality: input {triangle_quality(vertices, faces).min():.4f}, output {out.min_quality:.4f}")
    assert out.min_quality == pytest.approx(float(quality.min()))
    assert out.min_quality >= MIN_QUALITY
    assert np.percentile(quality, 1) >= 0.2


def test_a_flip_keeps_the_mesh_closed_and_lifts_a_flat_sliver():
    # A flat kite split along its long diagonal into two caps, closed by a pyramid below.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0.5, 0.1, 0], [0.5, -0.1, 0], [0.5, 0, -1]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [1, 0, 3], [2, 1, 4], [0, 2, 4], [3, 0, 4], [1, 3, 4]], dtype=np.int32)
    assert is_closed_and_oriented(faces)
    flipped = flip_slivers(vertices, faces)
    assert is_closed_and_oriented(flipped)
    before, after = triangle_quality(vertices, faces)[:2].min(), triangle_quality(vertices, flipped)[:2].min()
    assert after > before


def test_the_closed_and_oriented_check_catches_a_flipped_face_and_a_hole(part):
    _vertices, faces = part
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert not is_closed_and_oriented(flipped)
    assert not is_closed_and_oriented(faces[1:])


def test_a_part_under_its_target_is_left_alone(part):
    vertices, faces = part
    out = decimate(vertices, faces, len(faces) + 10)
    assert np.array_equal(out.faces, faces) and np.array_equal(out.vertices, vertices)


def test_targets_per_part_and_for_the_whole_result():
    assert part_targets([1000, 300], 0, whole=False) == [1000, 300]
    assert part_targets([1000, 300], 500, whole=False) == [500, 300]
    assert part_targets([3000, 1000], 2000, whole=True) == [1500, 500]
    assert part_targets([3000, 1000], 8000, whole=True) == [3000, 1000]
