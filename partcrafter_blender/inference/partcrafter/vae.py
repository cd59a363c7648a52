"""TripoSG-style shape VAE used by PartCrafter: latents -> occupancy logits.

Clean-room implementation from the conformance specification
(shared/conformance/partcrafter/README.md, sections vae/ and quirks 1, 2, 11, 12).
Only the decoder path runs; the encoder modules exist so that the published
checkpoint loads strictly (its keys and shapes are pinned by keys/vae.tsv).

Decoding is split into two stages so callers can reuse the expensive part:
`prepare_decoder(latents)` runs post_quant + the self-attention stack once and
projects the cross-attention keys/values; `query_logits(state, points)` embeds one
chunk of query points and runs the single cross-attention block.  `decode_sdf`
strings the two together with the official 50000-query chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import config_values

DEFAULT_CHUNK_SIZE = 50_000
# The flashvdm top-k estimates each head's key scores from every 100th query of a chunk.
TOPK_QUERY_STRIDE = 100


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 64
    num_attention_heads: int = 8
    width_encoder: int = 512
    width_decoder: int = 1024
    num_layers_encoder: int = 8
    num_layers_decoder: int = 16
    embedding_type: str = "frequency"
    embed_frequency: int = 8
    embed_include_pi: bool = False

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VAEConfig:
        """Read a diffusers-style config.json dict; `_`-prefixed bookkeeping keys are ignored."""
        cfg = cls(**config_values(config, cls, "VAE"))
        if cfg.embedding_type != "frequency":
            raise ValueError(f"unsupported VAE embedding_type {cfg.embedding_type!r} (only 'frequency')")
        return cfg

    @property
    def embed_dim(self) -> int:
        return 3 * (1 + 2 * self.embed_frequency)


def topk_size(num_tokens: int) -> int:
    """How many keys each head keeps under the flashvdm top-k (quirk 12)."""
    if num_tokens == 3072:
        return 1024
    if num_tokens == 512:
        return 256
    return num_tokens // 3


def frequency_embedding(points: torch.Tensor, num_freqs: int, include_pi: bool) -> torch.Tensor:
    """[x, sin(x*2^j), cos(x*2^j)] laid out per coordinate (quirk 11); always computed in fp32
    because sin(x*128) in fp16 would be noise."""
    x = points.float()
    freqs = 2.0 ** torch.arange(num_freqs, device=x.device, dtype=torch.float32)
    if include_pi:
        freqs = freqs * math.pi
    scaled = (x[..., :, None] * freqs).flatten(-2)  # coord-major: c0 f0..fF-1, c1 ..., c2 ...
    return torch.cat([x, scaled.sin(), scaled.cos()], dim=-1)


class ProjectedGELU(nn.Module):
    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width_in, width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))  # erf GELU


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear; the Identity keeps the checkpoint indices (net.0 / net.2)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([ProjectedGELU(width, 4 * width), nn.Identity(), nn.Linear(4 * width, width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


def _split_heads(x: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """Head-interleaved split (quirk 1): the concatenated projections are cut into `heads`
    consecutive slices, each holding `parts` head-dim pieces (q|k|v or k|v)."""
    b, n, width = x.shape
    hd = width // (heads * parts)
    x = x.view(b, n, heads, parts * hd).transpose(1, 2)  # [B, H, N, parts*hd]
    return list(x.split(hd, dim=-1))


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, hd = x.shape
    return x.transpose(1, 2).reshape(b, n, h * hd)


class Attention(nn.Module):
    """Bias-free q/k/v, biased output; `cross=True` adds the LayerNorm on key/value tokens."""

    def __init__(self, width: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.heads = heads
        if cross:
            self.norm_cross = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(width, width, bias=False)
        self.to_v = nn.Linear(width, width, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(width, width), nn.Identity()])

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _split_heads(torch.cat([self.to_q(x), self.to_k(x), self.to_v(x)], dim=-1), self.heads, 3)
        return self.to_out[0](_merge_heads(F.scaled_dot_product_attention(q, k, v)))

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.norm_cross(context)
        k, v = _split_heads(torch.cat([self.to_k(context), self.to_v(context)], dim=-1), self.heads, 2)
        return k, v

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-attention queries use the ordinary per-projection head split: [B, H, N, hd]."""
        b, n, width = x.shape
        return self.to_q(x).view(b, n, self.heads, width // self.heads).transpose(1, 2)

    def cross_attention(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, topk: bool = False
    ) -> torch.Tensor:
        q = self.queries(x)
        if q.shape[0] != keys.shape[0]:
            # Points shared by every latent row: their queries are projected once, not once per part.
            q = q.expand(keys.shape[0], -1, -1, -1)
        if topk:
            keys, values = _topk_keys(q, keys, values)
        return self.to_out[0](_merge_heads(F.scaled_dot_product_attention(q, keys, values)))


def _topk_keys(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flashvdm approximation (quirk 12): keep, per head, the k keys with the highest mean
    unscaled score over every 100th query."""
    idx = topk_indices(q, keys)
    gather = idx[..., None].expand(-1, -1, -1, keys.shape[-1])
    return keys.gather(2, gather), values.gather(2, gather)


def topk_indices(q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    scores = (q[:, :, ::TOPK_QUERY_STRIDE] @ keys.transpose(-1, -2)).mean(dim=2)  # [B, H, M]
    return scores.topk(topk_size(keys.shape[2]), dim=-1).indices


class TransformerBlock(nn.Module):
    """Self-attention block (norm1/attn1) or cross-attention block (norm2/attn2), then norm3/ff."""

    def __init__(self, width: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.cross = cross
        if cross:
            self.norm2 = nn.LayerNorm(width)
            self.attn2 = Attention(width, heads, cross=True)
        else:
            self.norm1 = nn.LayerNorm(width)
            self.attn1 = Attention(width, heads, cross=False)
        self.norm3 = nn.LayerNorm(width)
        self.ff = FeedForward(width)

    def forward_self(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1.self_attention(self.norm1(x))
        return x + self.ff(self.norm3(x))

    def forward_cross(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, topk: bool) -> torch.Tensor:
        x = x + self.attn2.cross_attention(self.norm2(x), keys, values, topk=topk)
        return x + self.ff(self.norm3(x))


class Encoder(nn.Module):
    """Point-cloud encoder: present for checkpoint compatibility only (inference never encodes)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        width = cfg.width_encoder
        self.proj_in = nn.Linear(cfg.in_channels + cfg.embed_dim, width)
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, cfg.num_attention_heads, cross=True)]
            + [TransformerBlock(width, cfg.num_attention_heads, cross=False) for _ in range(cfg.num_layers_encoder)]
        )
        self.norm_out = nn.LayerNorm(width)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        width = cfg.width_decoder
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, cfg.num_attention_heads, cross=False) for _ in range(cfg.num_layers_decoder)]
            + [TransformerBlock(width, cfg.num_attention_heads, cross=True)]
        )
        self.proj_query = nn.Linear(cfg.embed_dim, width)
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, 1)


@dataclass(frozen=True)
class DecoderState:
    """Per-latent data shared by every query chunk: the cross-attention keys/values [B, H, M, hd]."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def batch(self) -> int:
        return self.keys.shape[0]

    def select(self, rows: slice) -> DecoderState:
        return DecoderState(self.keys[rows], self.values[rows])


class TripoSGVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant = nn.Linear(cfg.width_encoder, 2 * cfg.latent_channels)
        self.post_quant = nn.Linear(cfg.latent_channels, cfg.width_decoder)

    @classmethod
    def from_config(cls, config: dict[str, Any] | VAEConfig) -> TripoSGVAE:
        cfg = config if isinstance(config, VAEConfig) else VAEConfig.from_dict(config)
        return cls(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.post_quant.weight.device

    def latent_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """post_quant + the decoder's self-attention stack: [B, M, C] -> [B, M, width]."""
        x = self.post_quant(latents.to(self.dtype))
        for block in self.decoder.blocks[:-1]:
            x = block.forward_self(x)
        return x

    def prepare_decoder(self, latents: torch.Tensor) -> DecoderState:
        """Everything that depends on the latents only; computed once, reused for every chunk."""
        keys, values = self.decoder.blocks[-1].attn2.project_kv(self.latent_tokens(latents))
        return DecoderState(keys, values)

    def _query_tokens(self, points: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        emb = frequency_embedding(points, cfg.embed_frequency, cfg.embed_include_pi).to(self.dtype)
        return self.decoder.proj_query(emb)  # batch 1 when the points are shared: broadcast later

    def topk_selection(self, state: DecoderState, points: torch.Tensor) -> torch.Tensor:
        """The key indices [B, H, k] the top-k approximation keeps for this chunk (diagnostics)."""
        block = self.decoder.blocks[-1]
        return topk_indices(block.attn2.queries(block.norm2(self._query_tokens(points))), state.keys)

    def query_logits(self, state: DecoderState, points: torch.Tensor, topk: bool = False) -> torch.Tensor:
        """Occupancy logits for one chunk of points [B or 1, N, 3] -> [B, N] (positive = inside).

        Points shared by every latent row may be passed with batch 1; the embedding, the norm and
        the query projection then run once for all rows (the residual broadcasts)."""
        x = self._query_tokens(points)
        x = self.decoder.blocks[-1].forward_cross(x, state.keys, state.values, topk=topk)
        x = self.decoder.proj_out(self.decoder.norm_out(x))
        return -x[..., 0]  # quirk 11: the decoder's output is negated

    def decode_sdf(
        self,
        latents: torch.Tensor,
        points: torch.Tensor,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        topk_first_chunk: bool = False,
    ) -> torch.Tensor:
        """Logits for `points` [B or 1, N, 3] under `latents` [B, M, C] -> [B, N].

        `topk_first_chunk` reproduces a freshly armed official flash decoder: the first chunk
        (queries 0..chunk_size-1) uses the top-k approximation, later chunks exact attention."""
        state = self.prepare_decoder(latents)
        chunks = [
            self.query_logits(state, points[:, start : start + chunk_size], topk=topk_first_chunk and start == 0)
            for start in range(0, points.shape[1], chunk_size)
        ]
        return torch.cat(chunks, dim=1)
