"""Synthetic figures with known ground truth: rectangles, discs, coloured block figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image
from relief_support import (
    block_figure,
    check_meshes,
    decode,
    disc_image,
    downsample_mask,
    iou,
    part_silhouettes,
    run,
)
from scipy.spatial import cKDTree

from partcrafter_blender.inference.images import decode_image


def block_coverage(result, figure) -> list[float]:
    """For each ground-truth block, the largest share of it covered by a single part."""
    sil = part_silhouettes(result, figure.mask.shape, side=figure.mask.shape[0])
    shares = []
    for block in figure.blocks:
        inside = sil[:, block]
        shares.append(float(inside.sum(axis=1).max() / block.sum()))
    return shares


def test_relief_blocks_follow_true_boundaries(figure):
    n = len(figure.blocks)
    result = run(figure.rgba, n)
    check_meshes(result, n)
    assert min(block_coverage(result, figure)) >= 0.80
    sil = part_silhouettes(result, figure.mask.shape, side=figure.mask.shape[0])
    assert iou(sil.any(axis=0), figure.mask) >= 0.90
    # Each part's colour is the block it covers.
    for part, s in zip(result.parts, sil):
        block = int(np.argmax([(s & b).sum() for b in figure.blocks]))
        assert np.abs(np.array(part.color[:3]) * 255 - figure.colours[block]).max() <= 12


def test_relief_blocks_touching_parts_meet(figure):
    n = len(figure.blocks)
    result = run(figure.rgba, n)
    sil = part_silhouettes(result, figure.mask.shape, side=figure.mask.shape[0])
    owner = [int(np.argmax([(s & b).sum() for s in sil])) for b in figure.blocks]
    trees = [cKDTree(p.vertices) for p in result.parts]
    # head-body, body-arms, body-legs touch in the figure: their meshes must touch too.
    for a, b in [(0, 1), (1, 2), (1, 3), (1, 4), (1, 5)]:
        pa, pb = owner[a], owner[b]
        gap = trees[pa].query(result.parts[pb].vertices)[0].min()
        assert gap < 1e-4


def test_relief_blocks_survive_jpeg_noise():
    figure = block_figure()
    buf = io.BytesIO()
    Image.fromarray(figure.rgba[..., :3]).save(buf, format="JPEG", quality=60)
    rgba = decode_image(buf.getvalue()).rgba
    result = run(rgba, len(figure.blocks))
    check_meshes(result, len(figure.blocks))
    assert min(block_coverage(result, figure)) >= 0.80


def test_relief_auto_finds_the_blocks(figure):
    result = run(figure.rgba, None)
    auto = result.metadata["auto_parts"]
    assert auto["count"] == len(result.parts) == len(figure.blocks)
    assert str(len(figure.blocks)) in auto["reason"]
    assert result.requested_parts is None


@pytest.mark.parametrize("count", [1, 3, 16])
def test_relief_single_rectangle_any_count(count):
    img = np.full((240, 320, 4), 255, np.uint8)
    img[60:180, 40:280, :3] = (30, 120, 200)
    result = run(img, count)
    check_meshes(result, count)
    sil = part_silhouettes(result, img.shape[:2], side=320)
    mask = np.zeros((240, 320), bool)
    mask[60:180, 40:280] = True
    assert iou(sil.any(axis=0), mask) >= 0.90
    # No confetti: every part is one connected piece.
    for part in result.parts:
        bodies = trimesh.Trimesh(part.vertices, part.faces, process=False).split(only_watertight=False)
        assert len(bodies) == 1


def test_relief_disc_is_round_and_inflated():
    img, mask = disc_image()
    result = run(img, 1)
    check_meshes(result, 1)
    sil = part_silhouettes(result, mask.shape, side=mask.shape[0])
    assert iou(sil[0], mask) >= 0.95
    v = result.parts[0].vertices
    # Frame: the disc spans about [-0.95, 0.95] and bulges towards the viewer like a ball.
    assert abs(v[:, 0].max() - 0.95) < 0.03 and abs(v[:, 1].min() + 0.95) < 0.03
    assert v[:, 2].max() > 0.6 and abs(v[:, 2].max() + v[:, 2].min()) < 1e-6


def test_relief_frame_orientation():
    """Image right -> +X, image up -> +Y, aspect preserved."""
    img = np.full((200, 400, 4), 255, np.uint8)
    img[50:150, 20:380, :3] = (0, 0, 0)  # wide bar
    img[20:50, 340:380, :3] = (255, 0, 0)  # red tab above its right end
    result = run(img, 2)
    red = min(result.parts, key=lambda p: abs(p.color[0] - 1.0) + p.color[1])
    centre = red.vertices.mean(axis=0)
    assert centre[0] > 0.5 and centre[1] > 0.2
    allv = np.concatenate([p.vertices for p in result.parts])
    width, height = np.ptp(allv[:, 0]), np.ptp(allv[:, 1])
    assert width == pytest.approx(1.9, abs=0.03)
    assert height / width == pytest.approx(130 / 360, abs=0.03)


def test_relief_photo_on_plain_wall():
    """Grey wall with a gradient, a soft shadow, JPEG noise: the object still comes out whole."""
    h, w = 300, 400
    yy, xx = np.mgrid[:h, :w]
    wall = 170 + 40 * xx / w + 10 * yy / h
    img = np.repeat(wall[..., None], 3, axis=2)
    shadow = np.exp(-(((xx - 230) / 70.0) ** 2 + ((yy - 250) / 20.0) ** 2))
    img *= 1 - 0.15 * shadow[..., None]
    figure_mask = np.zeros((h, w), bool)
    figure_mask[80:240, 140:260] = True  # box
    figure_mask[40:80, 170:230] = True  # lid
    img[80:240, 140:260] = (150, 60, 40)
    img[40:80, 170:230] = (40, 110, 60)
    rgba = decode(np.clip(img, 0, 255).astype(np.uint8), format="JPEG", quality=70)
    result = run(rgba, 2)
    check_meshes(result, 2)
    sil = part_silhouettes(result, (h, w), side=w).any(axis=0)
    assert iou(sil, downsample_mask(figure_mask, sil.shape)) >= 0.90


def test_relief_auto_splits_single_colour_ladder_at_its_junctions():
    """One colour, so only shape can tell: rails and rungs meet at right angles."""
    rungs = 5
    img = np.full((600, 300, 4), 255, np.uint8)
    rails = [np.zeros((600, 300), bool) for _ in range(2)]
    rails[0][20:580, 60:76] = True
    rails[1][20:580, 224:240] = True
    pieces = list(rails)
    for y in np.linspace(80, 520, rungs).astype(int):
        rung = np.zeros((600, 300), bool)
        rung[y : y + 12, 76:224] = True
        pieces.append(rung)
    for piece in pieces:
        img[piece, :3] = (90, 60, 40)
    result = run(img, None)
    auto = result.metadata["auto_parts"]
    assert auto["count"] == len(result.parts) == 2 + rungs
    assert "junctions at an angle" in auto["reason"]
    sil = part_silhouettes(result, (600, 300), side=600)
    for piece in pieces:
        assert (sil[:, piece].sum(axis=1).max() / piece.sum()) >= 0.8  # one part holds each piece


def _diagonal_shapes() -> dict[str, tuple[np.ndarray, int]]:
    """Figures whose parts touch themselves only at a corner: the cases that used to leave
    two distinct vertices at one position (a pinch edge once merged by distance)."""
    shapes: dict[str, tuple[np.ndarray, int]] = {}
    for square in (7, 12, 25, 40):
        img = np.full((320, 320, 4), 255, np.uint8)
        yy, xx = np.mgrid[:320, :320]
        board = (40 <= yy) & (yy < 280) & (40 <= xx) & (xx < 280)
        odd = ((yy - 40) // square + (xx - 40) // square) % 2 == 1
        img[board & odd, :3] = (200, 40, 40)
        img[board & ~odd, :3] = (40, 60, 200)
        shapes[f"checker{square}"] = (img, 2)
    img = np.full((300, 300, 4), 255, np.uint8)
    img[50:150, 50:150, :3] = (30, 140, 60)  # two squares meeting at one corner
    img[150:250, 150:250, :3] = (30, 140, 60)
    shapes["corner_squares"] = (img, 1)
    img = np.full((300, 300, 4), 255, np.uint8)
    for k in range(10):  # a staircase of blocks, each touching the next at a corner
        img[20 + 26 * k : 46 + 26 * k, 20 + 26 * k : 46 + 26 * k, :3] = (90, 90, 90) if k % 2 else (220, 150, 30)
    shapes["staircase"] = (img, 2)
    return shapes


@pytest.mark.parametrize("name", sorted(_diagonal_shapes()))
def test_relief_diagonal_touching_parts_stay_manifold_after_merge(name):
    img, count = _diagonal_shapes()[name]
    for quality in ("draft", "standard", "high"):
        check_meshes(run(img, count, quality=quality), count)
