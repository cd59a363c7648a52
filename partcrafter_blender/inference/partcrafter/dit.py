"""The part-aware diffusion transformer (PartCrafter's DiT).

Written from the conformance specification (shared/conformance/partcrafter/README.md,
"Quirks"); parameter names and shapes match the published checkpoint exactly, so its
state dict loads with strict=True.

Shape of the network: a time token is prepended to the latent tokens of every part,
a learned part embedding is added, then `num_layers` transformer blocks with U-Net
style long skips run. Blocks listed in `global_attn_block_ids` attend across all parts
of one object; the others attend within one part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import config_values

LN_EPS = 1e-5
QK_NORM_EPS = 1e-6


@dataclass(frozen=True)
class DiTConfig:
    """The keys of the official transformer/config.json (defaults = published model)."""

    num_attention_heads: int = 16
    width: int = 2048
    in_channels: int = 64
    num_layers: int = 21
    cross_attention_dim: int = 1024
    max_num_parts: int = 32
    enable_part_embedding: bool = True
    enable_local_cross_attn: bool = True
    enable_global_cross_attn: bool = True
    global_attn_block_ids: tuple[int, ...] = (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20)
    global_attn_block_id_range: Sequence[int] | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DiTConfig:
        values = config_values(config, cls, "transformer")
        if values.get("global_attn_block_id_range") is not None:
            # The published model uses explicit ids; the range form is not specified anywhere we can check.
            raise ValueError(
                "transformer config: 'global_attn_block_id_range' is not supported; use 'global_attn_block_ids'"
            )
        if "global_attn_block_ids" in values:
            values["global_attn_block_ids"] = tuple(int(i) for i in values["global_attn_block_ids"] or ())
        cfg = cls(**values)
        if cfg.width % cfg.num_attention_heads or cfg.width % 2:
            raise ValueError("transformer config: width must be even and divisible by num_attention_heads")
        return cfg


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the model dtype (quirk 6)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


class HeadRMSNorm(nn.Module):
    """RMS norm over the head dim for q and k (quirk 2); statistics in float32."""

    def __init__(self, dim: int, eps: float = QK_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(self.weight.dtype) * self.weight


class Attention(nn.Module):
    """Multi-head attention with the official head-interleaved projection split (quirk 1)."""

    def __init__(self, width: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        kv_in = width if kv_dim is None else kv_dim
        self.norm_q = HeadRMSNorm(self.head_dim)
        self.norm_k = HeadRMSNorm(self.head_dim)
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(kv_in, width, bias=False)
        self.to_v = nn.Linear(kv_in, width, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(width, width)])  # index 0 as in the checkpoint

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        # cat(q, k, v) is cut into `heads` slices of 3*hd: [q_h | k_h | v_h] per slice.
        qkv = torch.cat([self.to_q(x), self.to_k(x), self.to_v(x)], dim=-1)
        q, k, v = qkv.view(b, s, self.heads, 3 * self.head_dim).split(self.head_dim, dim=-1)
        return self._attend(q, self.norm_k(k).transpose(1, 2), v.transpose(1, 2))

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys (normalised) and values [B, H, L, hd] of the condition tokens.

        They depend on the condition only, so the sampling loop computes them once per generation."""
        b, n, _ = context.shape
        # k and v use the same interleaving on cat(k, v): slices of 2*hd per head.
        kv = torch.cat([self.to_k(context), self.to_v(context)], dim=-1)
        k, v = kv.view(b, n, self.heads, 2 * self.head_dim).split(self.head_dim, dim=-1)
        return self.norm_k(k).transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()

    def cross_attention(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`kv` from project_kv."""
        b, s, _ = x.shape
        return self._attend(self.to_q(x).view(b, s, self.heads, self.head_dim), *kv)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [B, S, H, hd] before its norm; k (normalised) and v [B, H, L, hd]."""
        b, s = q.shape[:2]
        out = F.scaled_dot_product_attention(self.norm_q(q).transpose(1, 2), k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class GeluProjection(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        # net.1 is a parameter-free slot (dropout in training) kept so the checkpoint's net.2 lines up.
        self.net = nn.ModuleList([GeluProjection(width, 4 * width), nn.Identity(), nn.Linear(4 * width, width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


@dataclass(frozen=True)
class PartLayout:
    """How the batch rows group into objects: `sizes[i]` consecutive rows are the parts of object i."""

    sizes: tuple[int, ...]

    @property
    def uniform(self) -> int | None:
        return self.sizes[0] if len(set(self.sizes)) == 1 else None

    def starts(self) -> list[int]:
        out, pos = [], 0
        for n in self.sizes:
            out.append(pos)
            pos += n
        return out


@dataclass(frozen=True)
class CrossKV:
    """One block's cross-attention keys/values [G, H, L, hd] for its attending groups (a batch row
    each in local blocks, an object each in global blocks), computed once per generation.

    Groups whose condition is all zeros (the unconditional half under guidance) get no keys:
    attention over all-zero keys and values is exactly zero, so their output is the to_out bias
    alone, bit for bit. `live` lists the groups that have keys (None = every group).
    """

    keys: torch.Tensor
    values: torch.Tensor
    live: torch.Tensor | None


class DiTBlock(nn.Module):
    """x += SelfAttn(LN x); x += CrossAttn(LN x, cond); x += FFN(LN x), with an optional long skip in front."""

    def __init__(self, cfg: DiTConfig, is_global: bool, cross_attn: bool, has_skip: bool) -> None:
        super().__init__()
        w = cfg.width
        self.is_global = is_global
        self.norm1 = FP32LayerNorm(w, eps=LN_EPS)
        self.attn1 = Attention(w, cfg.num_attention_heads)
        if cross_attn:
            self.norm2 = FP32LayerNorm(w, eps=LN_EPS)
            self.attn2 = Attention(w, cfg.num_attention_heads, kv_dim=cfg.cross_attention_dim)
        self.norm3 = FP32LayerNorm(w, eps=LN_EPS)
        self.ff = FeedForward(w)
        if has_skip:
            self.skip_norm = FP32LayerNorm(w, eps=LN_EPS)
            self.skip_linear = nn.Linear(2 * w, w)

    @property
    def has_cross_attention(self) -> bool:
        return hasattr(self, "attn2")

    def prepare_kv(self, context: torch.Tensor, layout: PartLayout, zero_rows: int = 0) -> CrossKV:
        """Keys/values for this block; the first `zero_rows` rows of `context` are all zeros."""
        starts = layout.starts()
        # Quirk 7: a global block attends to the first part's condition of each object only.
        groups, first_rows = (context[starts], starts) if self.is_global else (context, range(len(context)))
        live = None
        if zero_rows and (not self.is_global or layout.uniform is not None):
            kept = [g for g, row in enumerate(first_rows) if row >= zero_rows]
            live = torch.tensor(kept, dtype=torch.long, device=context.device)
            groups = groups[kept]
        keys, values = self.attn2.project_kv(groups)
        return CrossKV(keys, values, live)

    def forward(
        self, x: torch.Tensor, kv: CrossKV | None, layout: PartLayout, skip: torch.Tensor | None
    ) -> torch.Tensor:
        if skip is not None:
            # Quirk 5: concatenation order [skip, x], linear first, then the norm.
            x = self.skip_norm(self.skip_linear(torch.cat([skip, x], dim=-1)))
        h = self.norm1(x)
        x = x + (self._global_self(h, layout) if self.is_global else self.attn1.self_attention(h))
        if kv is not None:
            h = self.norm2(x)
            x = x + (self._global_cross(h, kv, layout) if self.is_global else self._cross(h, kv))
        return x + self.ff(self.norm3(x))

    def _global_self(self, h: torch.Tensor, layout: PartLayout) -> torch.Tensor:
        """Every part attends to the tokens (time tokens included) of all parts of its object."""
        b, s, w = h.shape
        n = layout.uniform
        if n is not None:
            return self.attn1.self_attention(h.reshape(b // n, n * s, w)).reshape(b, s, w)
        outs = [
            self.attn1.self_attention(h[a : a + k].reshape(1, k * s, w)).reshape(k, s, w)
            for a, k in zip(layout.starts(), layout.sizes)
        ]
        return torch.cat(outs, dim=0)

    def _cross(self, h: torch.Tensor, kv: CrossKV) -> torch.Tensor:
        """h [G, S, W], one row per attending group."""
        if kv.live is None:
            return self.attn2.cross_attention(h, (kv.keys, kv.values))
        out = self.attn2.to_out[0].bias.expand_as(h).clone()
        if len(kv.live):
            attended = self.attn2.cross_attention(h.index_select(0, kv.live), (kv.keys, kv.values))
            out.index_copy_(0, kv.live, attended)
        return out

    def _global_cross(self, h: torch.Tensor, kv: CrossKV, layout: PartLayout) -> torch.Tensor:
        """All parts of an object attend together to that object's condition group."""
        b, s, w = h.shape
        n = layout.uniform
        if n is not None:
            return self._cross(h.reshape(b // n, n * s, w), kv).reshape(b, s, w)
        outs = [
            self.attn2.cross_attention(h[a : a + k].reshape(1, k * s, w), (kv.keys[j : j + 1], kv.values[j : j + 1]))
            .reshape(k, s, w)
            for j, (a, k) in enumerate(zip(layout.starts(), layout.sizes))
        ]
        return torch.cat(outs, dim=0)


@dataclass(frozen=True)
class ConditionCache:
    """What the DiT derives from the image condition alone, reused by every denoising step:
    the cross-attention keys/values of each block (None for blocks without cross-attention)."""

    rows: int
    tokens: int
    layout: PartLayout
    blocks: tuple[CrossKV | None, ...]


class TimestepMLP(nn.Module):
    """Sinusoidal embedding ([sin, cos], shift 0) of sigma*1000, then Linear-GELU-Linear (quirk 4)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.linear_1 = nn.Linear(width, 4 * width)
        self.linear_2 = nn.Linear(4 * width, width)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timestep.device)
        freqs = torch.exp(exponent / half)
        args = timestep.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1).to(self.linear_1.weight.dtype)
        return self.linear_2(F.gelu(self.linear_1(emb)))


class PartCrafterDiT(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.time_proj = TimestepMLP(w)
        if config.enable_part_embedding:
            self.part_embedding = nn.Embedding(config.max_num_parts, w)
        self.proj_in = nn.Linear(config.in_channels, w)
        mid = config.num_layers // 2
        global_ids = set(config.global_attn_block_ids)
        self.blocks = nn.ModuleList(
            DiTBlock(
                config,
                is_global=i in global_ids,
                cross_attn=config.enable_global_cross_attn if i in global_ids else config.enable_local_cross_attn,
                has_skip=i > mid,
            )
            for i in range(config.num_layers)
        )
        self.norm_out = FP32LayerNorm(w, eps=LN_EPS)
        self.proj_out = nn.Linear(w, config.in_channels)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PartCrafterDiT:
        return cls(DiTConfig.from_dict(config))

    def part_ids(
        self, batch: int, num_parts: int | torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, PartLayout]:
        """Row of the part embedding for every batch element, and the object grouping.

        Quirk 3: with an integer num_parts the row is the batch index itself, so under CFG the
        conditional half uses rows N..2N-1. With a tensor (training path) rows restart per object.
        """
        if isinstance(num_parts, torch.Tensor):
            sizes = tuple(int(k) for k in num_parts.reshape(-1).tolist())
            if sum(sizes) != batch or min(sizes) < 1:
                raise ValueError(f"num_parts {list(sizes)} does not add up to the batch size {batch}")
            ids = torch.cat([torch.arange(k, device=device) for k in sizes])
            rows_needed = max(sizes)
        else:
            n = int(num_parts)
            if n < 1 or batch % n:
                raise ValueError(f"batch size {batch} is not a multiple of num_parts {n}")
            sizes = (n,) * (batch // n)
            ids = torch.arange(batch, device=device)
            rows_needed = batch
        if self.config.enable_part_embedding and rows_needed > self.config.max_num_parts:
            raise ValueError(
                f"a batch of {batch} rows needs {batch} part-embedding rows but the model has "
                f"{self.config.max_num_parts} (with guidance, at most {self.config.max_num_parts // 2} parts)"
            )
        return ids, PartLayout(sizes)

    def prepare_condition(
        self, encoder_hidden_states: torch.Tensor, num_parts: int | torch.Tensor, zero_rows: int = 0
    ) -> ConditionCache:
        """Cross-attention keys/values of every block for this condition [B, L, D] and part layout.

        `zero_rows`: the first rows of the condition are all zeros (the unconditional half under
        guidance). Their groups get no keys and their cross-attention output is the bias, which is
        exactly what attending to zero keys/values gives (see CrossKV); 0 computes every row."""
        b, tokens, _ = encoder_hidden_states.shape
        _, layout = self.part_ids(b, num_parts, encoder_hidden_states.device)
        context = encoder_hidden_states.to(self.proj_in.weight.dtype)
        if not 0 <= zero_rows <= b:
            raise ValueError(f"zero_rows must be between 0 and the batch size {b}, not {zero_rows}")
        if zero_rows and context.device.type != "meta" and bool(context[:zero_rows].ne(0).any()):
            raise ValueError(f"the first {zero_rows} condition rows are not all zeros")
        blocks = tuple(
            block.prepare_kv(context, layout, zero_rows) if block.has_cross_attention else None
            for block in self.blocks
        )
        return ConditionCache(b, tokens, layout, blocks)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        num_parts: int | torch.Tensor,
        condition: ConditionCache | None = None,
        part_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states [B, T, C], timestep [B] or 0-d (sigma*1000), encoder_hidden_states [B, L, D]
        -> velocity [B, T, C].

        `condition` (from prepare_condition) replaces encoder_hidden_states: the sampling loop
        builds it once and reuses it at every step. `part_rows` [B] overrides the part-embedding
        row of every batch element (several objects in one batch, each with the rows that it
        would get alone; see denoise.batch_part_rows)."""
        b, t, _ = hidden_states.shape
        dtype = self.proj_in.weight.dtype
        ids, layout = self.part_ids(b, num_parts, hidden_states.device)
        if part_rows is not None:
            if part_rows.shape != (b,) or int(part_rows.max()) >= self.config.max_num_parts:
                raise ValueError(f"part_rows must be {b} rows below {self.config.max_num_parts}")
            ids = part_rows.to(hidden_states.device)
        if condition is None:
            if encoder_hidden_states is None:
                raise ValueError("pass encoder_hidden_states or a prepared condition")
            condition = self.prepare_condition(encoder_hidden_states, num_parts)
        if condition.rows != b or condition.layout != layout:
            raise ValueError(f"the prepared condition is for {condition.rows} rows {condition.layout.sizes}, "
                             f"not {b} rows {layout.sizes}")
        if condition.tokens == t + 1 and any(
            blk.is_global and kv is not None for blk, kv in zip(self.blocks, condition.blocks)
        ):
            # Quirk 8: the official code then silently switches its global cross-attention to the
            # self-attention regrouping, whose exact result no reference pins; refuse rather than guess.
            raise ValueError(
                f"num_tokens + 1 must differ from the number of image tokens ({t + 1}); choose another token count"
            )

        if timestep.dim() == 0:
            # Embedded per row, not once: a one-row GEMM rounds differently (1.7e-6 on dit/) and the
            # time MLP is 0.001 % of a step.
            timestep = timestep.expand(b)
        temb = self.time_proj(timestep)
        x = self.proj_in(hidden_states.to(dtype))
        x = torch.cat([temb[:, None, :], x], dim=1)
        if self.config.enable_part_embedding:
            x = x + self.part_embedding(ids)[:, None, :]

        mid = len(self.blocks) // 2
        skips: list[torch.Tensor] = []
        for i, (block, kv) in enumerate(zip(self.blocks, condition.blocks)):
            x = block(x, kv, layout, skips.pop() if i > mid else None)
            if i < mid:
                skips.append(x)
        x = self.norm_out(x)[:, -t:]
        return self.proj_out(x)
