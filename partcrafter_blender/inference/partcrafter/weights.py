"""The PartCrafter weights folder: verify it without loading tensors, load it strictly, download it on request.

The folder has the layout of the published diffusers repository:

    model_index.json
    transformer/config.json + diffusion_pytorch_model.safetensors
    vae/config.json + diffusion_pytorch_model.safetensors
    image_encoder_dinov2/config.json + model.safetensors
    feature_extractor_dinov2/preprocessor_config.json
    scheduler/scheduler_config.json

Verification reads only the JSON headers of the safetensors files and compares every
tensor's name and shape with what the component's config implies, so it runs without
torch (in Blender's own Python, for the "Check local engine" button) and in
milliseconds on the 4 GB checkpoint. Loading then checks again, against the modules
actually built, before any tensor is copied.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import EngineUnavailable

Shape = tuple[int, ...]

DEFAULT_REPO_ID = "wgsxm/PartCrafter"
FLOAT_DTYPES = ("F16", "BF16", "F32")
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class Component:
    """One sub-folder of the weights folder."""

    name: str
    config: str  # file name inside the sub-folder
    weights: str | None  # safetensors file name, None for weight-less components
    class_name: str | None  # expected `_class_name` in the config, when it has one


COMPONENTS: tuple[Component, ...] = (
    Component("transformer", "config.json", "diffusion_pytorch_model.safetensors", "PartCrafterDiTModel"),
    Component("vae", "config.json", "diffusion_pytorch_model.safetensors", "TripoSGVAEModel"),
    Component("image_encoder_dinov2", "config.json", "model.safetensors", None),
    Component("feature_extractor_dinov2", "preprocessor_config.json", None, None),
    Component("scheduler", "scheduler_config.json", None, "RectifiedFlowScheduler"),
)


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype code: "F16", "BF16", "F32", ...
    shape: Shape


@dataclass
class ComponentReport:
    name: str
    problems: list[str] = field(default_factory=list)
    tensors: int = 0
    dtypes: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class WeightsReport:
    folder: str
    components: list[ComponentReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # folder-level problems (missing model_index.json, ...)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.components)

    def all_problems(self) -> list[str]:
        return list(self.problems) + [p for c in self.components for p in c.problems]

    def message(self) -> str:
        if self.ok:
            total = sum(c.tensors for c in self.components)
            size = sum(c.bytes for c in self.components)
            shown = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
            return f"The weights folder {self.folder} verifies: {total} tensors, {shown}."
        return f"The weights folder {self.folder} does not verify: " + " ".join(self.all_problems())

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "ok": self.ok,
            "message": self.message(),
            "components": {
                c.name: {"ok": c.ok, "tensors": c.tensors, "dtypes": c.dtypes, "bytes": c.bytes, "problems": c.problems}
                for c in self.components
            },
        }


class WeightsError(EngineUnavailable):
    """The weights folder is missing, incomplete or does not match the configs."""


# --------------------------------------------------------------------------- headers


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, TensorInfo]:
    """Tensor names, dtypes and shapes from a safetensors file, reading only its header.

    Also checks that the file is long enough for every tensor it declares, which is how
    an interrupted download shows up."""
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise WeightsError(f"{p.name} is not a safetensors file (shorter than 8 bytes).")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER_BYTES or 8 + n > size:
            raise WeightsError(f"{p.name} is not a valid safetensors file (header length {n} for a {size}-byte file).")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{p.name} has a damaged safetensors header ({exc}).") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{p.name} has a damaged safetensors header (not a JSON object).")
    out: dict[str, TensorInfo] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            out[name] = TensorInfo(str(info["dtype"]), tuple(int(d) for d in info["shape"]))
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise WeightsError(f"{p.name} has a damaged entry for tensor '{name}'.") from exc
    if 8 + n + end > size:
        raise WeightsError(
            f"{p.name} is truncated: its header declares {8 + n + end} bytes but the file has {size}"
            " (an interrupted download?)."
        )
    return out


# --------------------------------------------------------------------------- expected tensors


def expected_transformer_tensors(cfg: Mapping[str, Any]) -> dict[str, Shape]:
    """Every tensor of the PartCrafter DiT for a transformer/config.json."""
    if not (cfg.get("enable_local_cross_attn", True) and cfg.get("enable_global_cross_attn", True)):
        raise WeightsError("transformer/config.json disables cross-attention, which this engine does not support.")
    w, heads, layers = int(cfg["width"]), int(cfg["num_attention_heads"]), int(cfg["num_layers"])
    c, d = int(cfg["in_channels"]), int(cfg["cross_attention_dim"])
    if w % heads:
        raise WeightsError(f"transformer/config.json: width {w} is not divisible by {heads} heads.")
    hd = w // heads
    t: dict[str, Shape] = {}
    _linear(t, "time_proj.linear_1", w, 4 * w)
    _linear(t, "time_proj.linear_2", 4 * w, w)
    if cfg.get("enable_part_embedding", True):
        t["part_embedding.weight"] = (int(cfg["max_num_parts"]), w)
    _linear(t, "proj_in", c, w)
    for i in range(layers):
        b = f"blocks.{i}"
        _norm(t, f"{b}.norm1", w)
        _attention(t, f"{b}.attn1", w, w, qk_norm=hd)
        _norm(t, f"{b}.norm2", w)
        _attention(t, f"{b}.attn2", w, d, qk_norm=hd)
        _norm(t, f"{b}.norm3", w)
        _feed_forward(t, f"{b}.ff", w)
        if i > layers // 2:  # blocks after the middle take a long skip
            _norm(t, f"{b}.skip_norm", w)
            _linear(t, f"{b}.skip_linear", 2 * w, w)
    _norm(t, "norm_out", w)
    _linear(t, "proj_out", w, c)
    return t


def expected_vae_tensors(cfg: Mapping[str, Any]) -> dict[str, Shape]:
    """Every tensor of the TripoSG VAE (encoder and decoder) for a vae/config.json."""
    if cfg.get("embedding_type", "frequency") != "frequency":
        raise WeightsError(f"vae/config.json: embedding_type '{cfg.get('embedding_type')}' is not supported.")
    we, wd = int(cfg["width_encoder"]), int(cfg["width_decoder"])
    le, ld = int(cfg["num_layers_encoder"]), int(cfg["num_layers_decoder"])
    cl, ci = int(cfg["latent_channels"]), int(cfg["in_channels"])
    embed = 3 * (1 + 2 * int(cfg["embed_frequency"]))  # [x, sin, cos] per coordinate
    t: dict[str, Shape] = {}
    _linear(t, "encoder.proj_in", embed + ci, we)
    _cross_block(t, "encoder.blocks.0", we)
    for i in range(1, le + 1):
        _self_block(t, f"encoder.blocks.{i}", we)
    _norm(t, "encoder.norm_out", we)
    _linear(t, "quant", we, 2 * cl)
    _linear(t, "post_quant", cl, wd)
    for i in range(ld):
        _self_block(t, f"decoder.blocks.{i}", wd)
    _cross_block(t, f"decoder.blocks.{ld}", wd)
    _linear(t, "decoder.proj_query", embed, wd)
    _norm(t, "decoder.norm_out", wd)
    _linear(t, "decoder.proj_out", wd, 1)
    return t


def expected_image_encoder_tensors(cfg: Mapping[str, Any]) -> dict[str, Shape]:
    """Every tensor of a transformers Dinov2Model, under the checkpoint (4.x) names."""
    if cfg.get("use_swiglu_ffn", False):
        raise WeightsError("image_encoder_dinov2/config.json uses a SwiGLU MLP, which this engine does not support.")
    h, n = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    p, s, ch = int(cfg["patch_size"]), int(cfg["image_size"]), int(cfg.get("num_channels", 3))
    inner = int(h * float(cfg.get("mlp_ratio", 4)))
    bias = bool(cfg.get("qkv_bias", True))
    t: dict[str, Shape] = {"embeddings.cls_token": (1, 1, h)}
    if cfg.get("use_mask_token", True):
        t["embeddings.mask_token"] = (1, h)
    t["embeddings.position_embeddings"] = (1, (s // p) ** 2 + 1, h)
    t["embeddings.patch_embeddings.projection.weight"] = (h, ch, p, p)
    t["embeddings.patch_embeddings.projection.bias"] = (h,)
    for i in range(n):
        b = f"encoder.layer.{i}"
        _norm(t, f"{b}.norm1", h)
        for proj in ("query", "key", "value"):
            _linear(t, f"{b}.attention.attention.{proj}", h, h, bias=bias)
        _linear(t, f"{b}.attention.output.dense", h, h)
        t[f"{b}.layer_scale1.lambda1"] = (h,)
        _norm(t, f"{b}.norm2", h)
        _linear(t, f"{b}.mlp.fc1", h, inner)
        _linear(t, f"{b}.mlp.fc2", inner, h)
        t[f"{b}.layer_scale2.lambda1"] = (h,)
    _norm(t, "layernorm", h)
    return t


_DINO_V5_NAMES = re.compile(r"\.attention\.(q|k|v|o)_proj\.")
_DINO_V5_TO_CHECKPOINT = {"q": ".attention.attention.query.", "k": ".attention.attention.key.",
                          "v": ".attention.attention.value.", "o": ".attention.output.dense."}


def dinov2_checkpoint_name(name: str) -> str:
    """transformers 5.x in-memory DINOv2 names (attention.q_proj, ...) -> the checkpoint names."""
    return _DINO_V5_NAMES.sub(lambda m: _DINO_V5_TO_CHECKPOINT[m.group(1)], name)


_EXPECTED = {
    "transformer": expected_transformer_tensors,
    "vae": expected_vae_tensors,
    "image_encoder_dinov2": expected_image_encoder_tensors,
}


def _linear(t: dict[str, Shape], name: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
    t[f"{name}.weight"] = (fan_out, fan_in)
    if bias:
        t[f"{name}.bias"] = (fan_out,)


def _norm(t: dict[str, Shape], name: str, width: int) -> None:
    t[f"{name}.weight"] = (width,)
    t[f"{name}.bias"] = (width,)


def _attention(t: dict[str, Shape], name: str, width: int, kv_width: int, qk_norm: int | None = None,
               norm_cross: bool = False) -> None:
    if norm_cross:
        _norm(t, f"{name}.norm_cross", kv_width)
    if qk_norm:
        t[f"{name}.norm_q.weight"] = (qk_norm,)
        t[f"{name}.norm_k.weight"] = (qk_norm,)
    _linear(t, f"{name}.to_q", width, width, bias=False)
    _linear(t, f"{name}.to_k", kv_width, width, bias=False)
    _linear(t, f"{name}.to_v", kv_width, width, bias=False)
    _linear(t, f"{name}.to_out.0", width, width)


def _feed_forward(t: dict[str, Shape], name: str, width: int) -> None:
    _linear(t, f"{name}.net.0.proj", width, 4 * width)
    _linear(t, f"{name}.net.2", 4 * width, width)


def _self_block(t: dict[str, Shape], name: str, width: int) -> None:
    _norm(t, f"{name}.norm1", width)
    _attention(t, f"{name}.attn1", width, width)
    _norm(t, f"{name}.norm3", width)
    _feed_forward(t, f"{name}.ff", width)


def _cross_block(t: dict[str, Shape], name: str, width: int) -> None:
    _norm(t, f"{name}.norm2", width)
    _attention(t, f"{name}.attn2", width, width, norm_cross=True)
    _norm(t, f"{name}.norm3", width)
    _feed_forward(t, f"{name}.ff", width)


# --------------------------------------------------------------------------- verification


def compare_tensors(
    where: str, expected: Mapping[str, Shape], found: Mapping[str, Shape], limit: int = 5
) -> list[str]:
    """One sentence per kind of mismatch, naming the first few tensors of each kind."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"is missing {_count(len(missing), 'tensor')}: {_names(missing, limit)}")
    if wrong:
        shown = ", ".join(
            f"{k} (expected {list(expected[k])}, found {list(found[k])})" for k in wrong[:limit]
        ) + ("" if len(wrong) <= limit else f" and {len(wrong) - limit} more")
        parts.append(f"{len(wrong)} {'has' if len(wrong) == 1 else 'have'} the wrong shape: {shown}")
    if extra:
        parts.append(f"has {_count(len(extra), 'unexpected tensor')}: {_names(extra, limit)}")
    return [f"{where} " + "; ".join(parts) + "."] if parts else []


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(names: list[str], limit: int) -> str:
    return ", ".join(names[:limit]) + ("" if len(names) <= limit else f" and {len(names) - limit} more")


def read_config(folder: Path, component: Component) -> dict[str, Any]:
    path = folder / component.name / component.config
    rel = f"{component.name}/{component.config}"
    if not path.is_file():
        raise WeightsError(f"{rel} is missing.")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{rel} cannot be read as JSON ({exc}).") from exc
    if not isinstance(cfg, dict):
        raise WeightsError(f"{rel} is not a JSON object.")
    if component.class_name and cfg.get("_class_name") != component.class_name:
        raise WeightsError(f"{rel} describes a '{cfg.get('_class_name')}', expected a '{component.class_name}'.")
    return cfg


def weights_files(folder: Path, component: Component) -> list[Path]:
    """The component's safetensors file, or its shards when there is an index next to it."""
    assert component.weights
    single = folder / component.name / component.weights
    index = single.with_name(component.weights + ".index.json")
    if single.is_file() or not index.is_file():
        return [single]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{component.name}/{index.name} cannot be read ({exc}).") from exc
    return [index.parent / name for name in sorted(set(weight_map.values()))]


def _verify_component(folder: Path, component: Component) -> ComponentReport:
    report = ComponentReport(component.name)
    try:
        cfg = read_config(folder, component)
        if component.weights is None:
            return report
        expected = _EXPECTED[component.name](cfg)
        files = weights_files(folder, component)
    except (WeightsError, KeyError, TypeError, ValueError) as exc:
        report.problems.append(str(exc) if isinstance(exc, WeightsError)
                               else f"{component.name}/{component.config} lacks a usable value ({exc}).")
        return report
    found: dict[str, TensorInfo] = {}
    for path in files:
        rel = f"{component.name}/{path.name}"
        if not path.is_file():
            report.problems.append(f"{rel} is missing.")
            continue
        try:
            found.update(read_safetensors_header(path))
        except WeightsError as exc:
            report.problems.append(f"{component.name}/{exc}")
            continue
        report.bytes += path.stat().st_size
    if report.problems:
        return report
    if component.name == "image_encoder_dinov2":
        found = {dinov2_checkpoint_name(k): v for k, v in found.items()}
    rel = f"{component.name}/{files[0].name if len(files) == 1 else component.weights + ' (shards)'}"
    report.problems += compare_tensors(rel, expected, {k: v.shape for k, v in found.items()})
    bad_dtype = sorted(k for k, v in found.items() if v.dtype not in FLOAT_DTYPES)
    if bad_dtype:
        report.problems.append(
            f"{rel} has {_count(len(bad_dtype), 'tensor')} that are not float16/bfloat16/float32: {_names(bad_dtype, 5)}."
        )
    report.tensors = len(found)
    report.dtypes = sorted({v.dtype for v in found.values()})
    return report


def verify_weights_folder(folder: str | os.PathLike[str] | None) -> WeightsReport:
    """Check the whole folder from configs and headers only (no torch, no tensor data read)."""
    if folder is None or str(folder).strip() == "":
        return WeightsReport("(none)", problems=["No weights folder is configured."])
    root = Path(os.path.expanduser(str(folder)))
    report = WeightsReport(str(root))
    if not root.is_dir():
        report.problems.append(f"The folder {root} does not exist.")
        return report
    index = root / "model_index.json"
    if not index.is_file():
        parent = _enclosing_weights_folder(root)
        if parent is not None:  # e.g. the transformer/ folder was picked instead of the weights folder
            report.problems.append(
                f"This is the subfolder '{root.resolve().relative_to(parent)}' of a weights folder; choose the folder above it: {parent}"
            )
            return report
        report.problems.append("model_index.json is missing (is this the PartCrafter folder?).")
    else:
        try:
            listed = json.loads(index.read_text(encoding="utf-8"))
            absent = [c.name for c in COMPONENTS if c.name not in listed]
            if absent:
                report.problems.append(f"model_index.json does not list: {', '.join(absent)}.")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            report.problems.append(f"model_index.json cannot be read as JSON ({exc}).")
    report.components = [_verify_component(root, c) for c in COMPONENTS]
    return report


def _enclosing_weights_folder(folder: Path, levels: int = 3) -> Path | None:
    """The nearest folder above `folder` that holds model_index.json, if any."""
    for parent in list(folder.resolve().parents)[:levels]:
        if (parent / "model_index.json").is_file():
            return parent
    return None


def require_valid_weights(folder: str | os.PathLike[str] | None) -> WeightsReport:
    report = verify_weights_folder(folder)
    if not report.ok:
        raise WeightsError(report.message())
    return report


# --------------------------------------------------------------------------- loading (torch)


def load_component_tensors(folder: str | os.PathLike[str], name: str, device: Any = "cpu", dtype: Any = None) -> dict:
    """All tensors of one component, read straight onto `device`, floats cast to `dtype`."""
    from safetensors.torch import load_file

    component = next(c for c in COMPONENTS if c.name == name)
    tensors: dict = {}
    for path in weights_files(Path(folder), component):
        if not path.is_file():
            raise WeightsError(f"{name}/{path.name} is missing.")
        tensors.update(load_file(str(path), device=str(device)))
    if dtype is not None:
        for key in list(tensors):  # one tensor at a time, so the two copies never coexist in full
            if tensors[key].is_floating_point():
                tensors[key] = tensors[key].to(dtype)
    return tensors


def load_strict(module: Any, tensors: Mapping[str, Any], where: str, rename: Iterable[tuple[str, str]] = ()) -> None:
    """Load `tensors` into `module`, refusing any missing, unexpected or mis-shaped tensor.

    `rename` pairs (checkpoint name pattern, module name replacement) adapt naming
    differences (regular expressions, applied in order). Modules built on the meta
    device get the tensors assigned, so no second copy is allocated."""
    renamed = dict(tensors)
    for pattern, repl in rename:
        renamed = {re.sub(pattern, repl, k): v for k, v in renamed.items()}
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = compare_tensors(where, expected, {k: tuple(v.shape) for k, v in renamed.items()})
    if problems:
        raise WeightsError(" ".join(problems))
    on_meta = any(getattr(p, "is_meta", False) for p in module.state_dict().values())
    module.load_state_dict(renamed, strict=True, assign=on_meta)


# --------------------------------------------------------------------------- download


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def download_weights(repo_id: str, revision: str, dest: str | os.PathLike[str], allow_online: bool) -> Path:
    """Fetch the weights folder from the Hugging Face Hub, pinned to a commit.

    Only when the user asked for it and online access is allowed: `allow_online` must be
    True and HF_HUB_OFFLINE unset. Returns the folder after verifying it."""
    if not allow_online:
        raise EngineUnavailable(
            "Downloading the PartCrafter weights needs online access, which is not allowed. "
            "Enable online access in the preferences, or download the folder yourself and set its path."
        )
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise EngineUnavailable("HF_HUB_OFFLINE is set, so the weights cannot be downloaded.")
    if not _COMMIT.match(revision or ""):
        raise EngineUnavailable(
            f"The weights revision must be a full 40-character commit hash (got '{revision}'), so that every "
            "download gets exactly the same files."
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise EngineUnavailable("huggingface_hub is not installed in the engine's Python (pip install huggingface_hub).") from exc
    patterns = ["model_index.json"] + [f"{c.name}/{c.config}" for c in COMPONENTS]
    # the single file, or its index and shards (name-00001-of-00002.safetensors)
    patterns += [f"{c.name}/{c.weights.removesuffix('.safetensors')}*" for c in COMPONENTS if c.weights]
    try:
        path = snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(dest), allow_patterns=patterns)
    except Exception as exc:  # network, auth, missing revision: all end as one readable sentence
        raise EngineUnavailable(f"Downloading {repo_id}@{revision[:12]} failed: {exc}") from exc
    require_valid_weights(path)
    return Path(path)
