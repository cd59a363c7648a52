"""Multi-part GLB: write and read, numpy only (and Pillow for an embedded picture).

One glTF node and one mesh per part, each named after the part, each with its own
material colour. A textured result (the relief preview) embeds its one image once, as a
PNG in the binary chunk; every part with UVs has TEXCOORD_0 and a material whose base
colour texture is that image (its flat colour kept in the material's extras).
Coordinates stay in glTF's Y-up frame (the engines' frame). Seed
variants: one root node per variant (named "seed_N"), its parts as children, and the
seeds in the scene's extras as `variant_seeds`.

Hand-written rather than trimesh because it also runs inside Blender, where every
bundled wheel costs the user download size; tests cross-check it against trimesh.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .contract import PartMesh, part_name
from .errors import PartCrafterError
from .srgb import linear_to_srgb, srgb_to_linear

_GLB_MAGIC = 0x46546C67
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942

_COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
FLAT_COLOR_EXTRA = "flat_color"  # material extras: the part's sRGB colour when a texture shows instead


class GLBError(PartCrafterError):
    """A GLB file that cannot be read as parts."""


def _pad4(b: bytes, fill: bytes) -> bytes:
    return b + fill * ((-len(b)) % 4)


def write_glb(
    parts: list[PartMesh],
    extras: dict | None = None,
    variant_seeds: list[int] | None = None,
    texture: np.ndarray | None = None,
) -> bytes:
    """Serialise parts as one binary glTF with one named node per part (under one node per
    variant when there are several `variant_seeds`; each part's `variant` says which).
    `texture` (RGBA uint8, top row first) is embedded once and used by the parts with UVs."""
    gltf: dict = {
        "asset": {"version": "2.0", "generator": "PartCrafter for Blender"},
        "scene": 0,
        "scenes": [{"nodes": list(range(len(parts)))}],
        "nodes": [],
        "meshes": [],
        "materials": [],
        "accessors": [],
        "bufferViews": [],
        "buffers": [],
    }
    if extras:
        gltf["scenes"][0]["extras"] = dict(extras)
    blob = bytearray()

    def add_view(data: bytes, target: int | None) -> int:
        offset = len(blob)
        blob.extend(_pad4(data, b"\x00"))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:  # images are not vertex data: no target
            view["target"] = target
        gltf["bufferViews"].append(view)
        return len(gltf["bufferViews"]) - 1

    textured = texture is not None and any(p.uvs is not None for p in parts)
    if textured:
        gltf["images"] = [{"bufferView": add_view(_png(texture), None), "mimeType": "image/png", "name": "reference"}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"source": 0, "sampler": 0}]

    for i, part in enumerate(parts):
        v = np.ascontiguousarray(part.vertices, dtype=np.float32)
        f = np.ascontiguousarray(part.faces, dtype=np.uint32).reshape(-1)
        pos_view = add_view(v.tobytes(), 34962)
        idx_view = add_view(f.tobytes(), 34963)
        vmin = v.min(axis=0).tolist() if len(v) else [0.0, 0.0, 0.0]
        vmax = v.max(axis=0).tolist() if len(v) else [0.0, 0.0, 0.0]
        gltf["accessors"].append(
            {"bufferView": pos_view, "componentType": 5126, "count": len(v), "type": "VEC3", "min": vmin, "max": vmax}
        )
        gltf["accessors"].append({"bufferView": idx_view, "componentType": 5125, "count": int(f.size), "type": "SCALAR"})
        attributes = {"POSITION": len(gltf["accessors"]) - 2}
        indices = len(gltf["accessors"]) - 1
        color = list(part.color) if part.color is not None else [0.8, 0.8, 0.8, 1.0]
        pbr: dict[str, Any] = {"baseColorFactor": _srgb_to_linear(color), "metallicFactor": 0.0}
        material: dict[str, Any] = {"name": part.name, "pbrMetallicRoughness": pbr}
        if textured and part.uvs is not None:
            uv_view = add_view(np.ascontiguousarray(part.uvs, dtype=np.float32).tobytes(), 34962)
            gltf["accessors"].append({"bufferView": uv_view, "componentType": 5126, "count": len(v), "type": "VEC2"})
            attributes["TEXCOORD_0"] = len(gltf["accessors"]) - 1
            # glTF multiplies factor and texture: white shows the picture as it is.
            pbr.update(baseColorFactor=[1.0, 1.0, 1.0, 1.0], baseColorTexture={"index": 0, "texCoord": 0})
            material["extras"] = {FLAT_COLOR_EXTRA: [float(x) for x in color]}
        gltf["materials"].append(material)
        gltf["meshes"].append(
            {"name": part.name, "primitives": [{"attributes": attributes, "indices": indices, "material": i}]}
        )
        gltf["nodes"].append({"name": part.name, "mesh": i})
    if variant_seeds and len(variant_seeds) > 1:
        roots = []
        for k, seed in enumerate(variant_seeds):
            children = [i for i, part in enumerate(parts) if part.variant == k]
            roots.append(len(gltf["nodes"]))
            gltf["nodes"].append({"name": f"seed_{seed}", "children": children, "extras": {"seed": seed}})
        gltf["scenes"][0]["nodes"] = roots
        gltf["scenes"][0].setdefault("extras", {})["variant_seeds"] = list(variant_seeds)
    gltf["buffers"].append({"byteLength": len(blob)})

    json_chunk = _pad4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    bin_chunk = bytes(blob)
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    out = bytearray(struct.pack("<III", _GLB_MAGIC, 2, total))
    out += struct.pack("<II", len(json_chunk), _CHUNK_JSON) + json_chunk
    out += struct.pack("<II", len(bin_chunk), _CHUNK_BIN) + bin_chunk
    return bytes(out)


def read_glb(data: bytes, name: str = "GLB") -> list[PartMesh]:
    """Parse a GLB into parts: one part per node that has a mesh (node transforms applied,
    primitives of one mesh merged). Raises GLBError with a clear message when it cannot."""
    try:
        gltf, binary = _split_chunks(data)
        return _parts_from_gltf(gltf, binary)
    except GLBError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, struct.error) as exc:
        raise GLBError(f"{name} is not a valid multi-part GLB ({exc}).") from exc


def read_glb_extras(data: bytes) -> dict[str, Any]:
    """The default scene's `extras` (the provenance write_glb stores), or {} when there are none
    or the GLB cannot be read (read_glb reports why)."""
    try:
        gltf, _binary = _split_chunks(data)
        extras = gltf["scenes"][gltf.get("scene", 0)].get("extras", {})
    except (GLBError, KeyError, IndexError, TypeError, AttributeError, ValueError, struct.error):
        return {}
    return extras if isinstance(extras, dict) else {}


def read_glb_texture(data: bytes) -> np.ndarray | None:
    """The one image the parts' base colour textures use (RGBA uint8, top row first), or
    None when no material has one, when they use several (not our layout: the parts keep
    their flat colours) or when it is not embedded (an external file)."""
    try:
        gltf, binary = _split_chunks(data)
        used = {
            m.get("pbrMetallicRoughness", {}).get("baseColorTexture", {}).get("index")
            for m in gltf.get("materials", [])
        } - {None}
        if len(used) != 1:
            return None
        image = gltf["images"][gltf["textures"][used.pop()]["source"]]
        if "bufferView" not in image:
            return None
        view = gltf["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        encoded = binary[start : start + view["byteLength"]]
        with Image.open(io.BytesIO(encoded)) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    except GLBError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OSError, struct.error) as exc:
        raise GLBError(f"The GLB's texture cannot be read ({exc}).") from exc


def read_glb_file(path: str | Path) -> list[PartMesh]:
    p = Path(path)
    if not p.is_file():
        raise GLBError(f"File not found: {p}")
    return read_glb(p.read_bytes(), name=p.name)


def _split_chunks(data: bytes) -> tuple[dict, bytes]:
    if len(data) < 20:
        raise GLBError("The GLB is truncated (shorter than its header).")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise GLBError("Not a GLB file (bad magic number).")
    if version != 2:
        raise GLBError(f"Unsupported glTF version {version}; only 2 is supported.")
    if length > len(data):
        raise GLBError(f"The GLB is truncated ({len(data)} of {length} bytes).")
    offset, gltf, binary = 12, None, b""
    while offset + 8 <= length:
        clen, ctype = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + clen]
        if len(chunk) != clen:
            raise GLBError("The GLB is truncated inside a chunk.")
        if ctype == _CHUNK_JSON:
            gltf = json.loads(chunk.decode("utf-8"))
        elif ctype == _CHUNK_BIN and not binary:
            binary = chunk
        offset += 8 + clen
    if gltf is None:
        raise GLBError("The GLB has no JSON chunk.")
    return gltf, binary


def _accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0:
        raise GLBError("External buffers are not supported; use a self-contained .glb.")
    dtype = np.dtype(_COMPONENT_DTYPES[acc["componentType"]])
    width = _TYPE_WIDTH[acc["type"]]
    count = acc["count"]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or dtype.itemsize * width
    end = start + stride * (count - 1) + dtype.itemsize * width if count else start
    if end > len(binary):
        raise GLBError("The GLB's binary data is truncated.")
    if stride == dtype.itemsize * width:
        arr = np.frombuffer(binary, dtype=dtype, count=count * width, offset=start).reshape(count, width)
    else:
        rows = np.frombuffer(binary, dtype=np.uint8, count=end - start, offset=start)
        arr = np.lib.stride_tricks.as_strided(rows, (count, width * dtype.itemsize), (stride, 1)).copy().view(dtype)
    return arr


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    t = np.array(node.get("translation", [0, 0, 0]), dtype=np.float64)
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    s = np.array(node.get("scale", [1, 1, 1]), dtype=np.float64)
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = r * s
    m[:3, 3] = t
    return m


def _parts_from_gltf(gltf: dict, binary: bytes) -> list[PartMesh]:
    nodes = gltf.get("nodes", [])
    scene = gltf.get("scenes", [{}])[gltf.get("scene", 0)] if gltf.get("scenes") else {"nodes": list(range(len(nodes)))}
    parts: list[PartMesh] = []

    # Our variant layout: one root per seed; any other GLB is one variant.
    roots = scene.get("nodes", [])
    seeds = scene.get("extras", {}).get("variant_seeds") if isinstance(scene.get("extras"), dict) else None
    by_root = isinstance(seeds, list) and len(seeds) == len(roots)

    def visit(idx: int, parent: np.ndarray, variant: int) -> None:
        node = nodes[idx]
        world = parent @ _node_matrix(node)
        if "mesh" in node:
            part = _mesh_part(gltf, binary, node, world, len(parts))
            part.variant = variant
            parts.append(part)
        for child in node.get("children", []):
            visit(child, world, variant)

    for k, root in enumerate(roots):
        visit(root, np.eye(4), k if by_root else 0)
    if not parts:
        raise GLBError("The GLB contains no meshes.")
    return parts


def _mesh_part(gltf: dict, binary: bytes, node: dict, world: np.ndarray, index: int) -> PartMesh:
    mesh = gltf["meshes"][node["mesh"]]
    verts, faces, uvs, base, color = [], [], [], 0, None
    for prim in mesh["primitives"]:
        if prim.get("mode", 4) != 4:
            continue  # points and lines are not parts
        v = _accessor(gltf, binary, prim["attributes"]["POSITION"]).astype(np.float64)
        if "indices" in prim:
            f = _accessor(gltf, binary, prim["indices"]).reshape(-1, 3).astype(np.int64)
        else:
            f = np.arange(len(v), dtype=np.int64).reshape(-1, 3)
        if f.size and (f.max() >= len(v) or f.min() < 0):
            raise GLBError(f"Mesh '{mesh.get('name', index)}' has face indices out of range.")
        verts.append(v)
        faces.append(f + base)
        if "TEXCOORD_0" in prim["attributes"]:
            uvs.append(_accessor(gltf, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float32))
        base += len(v)
        if color is None and "material" in prim:
            material = gltf["materials"][prim["material"]]
            flat = material.get("extras", {}).get(FLAT_COLOR_EXTRA) if isinstance(material.get("extras"), dict) else None
            factor = material.get("pbrMetallicRoughness", {}).get("baseColorFactor")
            if flat:
                color = tuple(float(x) for x in flat)
            elif factor:
                color = tuple(_linear_to_srgb(factor))
    if not verts:
        raise GLBError(f"Mesh '{mesh.get('name', index)}' has no triangles.")
    v = np.concatenate(verts)
    v = v @ world[:3, :3].T + world[:3, 3]
    name = node.get("name") or mesh.get("name") or part_name(index)
    uv = np.concatenate(uvs) if len(uvs) == len(verts) else None  # UVs only when every primitive has them
    return PartMesh(
        name=name, vertices=v.astype(np.float32), faces=np.concatenate(faces).astype(np.int32), color=color, uvs=uv
    )


def _png(rgba: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), mode="RGBA").save(out, format="PNG")
    return out.getvalue()


def _srgb_to_linear(c: tuple[float, ...]) -> list[float]:
    """An sRGB colour as a glTF base colour factor (linear, alpha kept)."""
    return [round(float(x), 6) for x in srgb_to_linear(c[:3])] + [float(c[3]) if len(c) > 3 else 1.0]


def _linear_to_srgb(c: list[float]) -> list[float]:
    return [float(x) for x in linear_to_srgb(c[:3])] + [float(c[3]) if len(c) > 3 else 1.0]
