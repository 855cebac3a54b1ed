"""SAM's prompt encoder and two-way-transformer mask decoder (written for photoshield).

Shapes follow the Segment Anything paper: a (B, 256, h, w) image embedding, prompts as
sparse tokens (points, box corners) encoded with random Fourier features, and a decoder
that returns low-resolution mask logits at 4x the embedding grid plus an IoU estimate
per mask. Parameter names follow the SAM / LiteMedSAM checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .tinyvit import LayerNorm2d


class RandomFourierEncoding(nn.Module):
    """Positional encoding of (x, y) in [0, 1] by a fixed random Gaussian projection: [sin, cos]."""

    def __init__(self, num_features: int = 128):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_features))

    def encode(self, xy: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates normalised to [0, 1] -> (..., 2 * num_features)."""
        proj = (2 * xy - 1) @ self.positional_encoding_gaussian_matrix.to(xy.dtype)
        proj = 2 * math.pi * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an (h, w) grid: (C, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return self.encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points and boxes -> sparse tokens; "no mask" -> a dense embedding (mask prompts are not used)."""

    def __init__(self, embed_dim: int = 256, embedding_size: tuple[int, int] = (64, 64), input_size: tuple[int, int] = (256, 256), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = embedding_size
        self.input_size = input_size
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        # Mask-prompt path: kept so that checkpoints load strictly; photoshield does not feed masks.
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, 2, 2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, 2, 2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, 1),
        )

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: (1, C, h, w)."""
        return self.pe_layer.grid(self.embedding_size)[None]

    def _encode_xy(self, xy: torch.Tensor) -> torch.Tensor:
        scale = xy.new_tensor([self.input_size[1], self.input_size[0]])
        return self.pe_layer.encode((xy + 0.5) / scale)  # +0.5: pixel centres

    def forward(self, points: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N, C) and dense (B, C, h, w) prompt embeddings; coordinates in model-input pixels.

        ``points`` (B, N, 2) with ``labels`` (B, N): 1 foreground, 0 background, -1 ignored.
        ``boxes`` (B, 4) as x0, y0, x1, y1.
        """
        tokens = []
        if points is not None:
            if boxes is None:  # SAM appends one "not a point" token when there is no box
                points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
                labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
            emb = self._encode_xy(points)
            lab = labels[..., None]
            emb = torch.where(lab == -1, self.not_a_point_embed.weight.to(emb.dtype), emb)
            emb = emb + (lab == 0) * self.point_embeddings[0].weight + (lab == 1) * self.point_embeddings[1].weight
            tokens.append(emb)
        if boxes is not None:
            corners = self._encode_xy(boxes.reshape(-1, 2, 2))
            corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
            tokens.append(corners + corner_types)
        sparse = torch.cat(tokens, dim=1) if tokens else self.no_mask_embed.weight.new_zeros(batch, 0, self.embed_dim)
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.embedding_size)
        return sparse, dense


class Attention(nn.Module):
    """Multi-head attention whose internal width can be reduced (``downsample``), as in SAM's decoder."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token cross-attention."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample=2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Prompt tokens and image tokens attend to each other ``depth`` times, then tokens attend once more."""

    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, num_heads, mlp_dim, skip_first_pe=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys))
        return queries, keys


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (hypernetworks and the IoU head)."""

    def __init__(self, dim: int, hidden: int, out: int, num_layers: int):
        super().__init__()
        sizes = [dim] + [hidden] * (num_layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """Image embedding + prompt tokens -> (B, M, 4h, 4w) mask logits and (B, M) predicted IoU."""

    def __init__(self, dim: int = 256, num_multimask: int = 3, depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048, iou_hidden: int = 256):
        super().__init__()
        self.num_mask_tokens = num_multimask + 1
        self.transformer = TwoWayTransformer(depth, dim, num_heads, mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, 2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, 2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_hidden, self.num_mask_tokens, 3)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``multimask`` picks the three ambiguity masks; otherwise the single-mask token."""
        batch = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).to(sparse.dtype)
        tokens = torch.cat([out_tokens[None].expand(batch, -1, -1), sparse], dim=1)
        src = image + dense
        b, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        upscaled = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        bu, cu, hu, wu = upscaled.shape
        masks = (hyper @ upscaled.view(bu, cu, hu * wu)).view(bu, -1, hu, wu)
        iou = self.iou_prediction_head(hs[:, 0])
        chosen = slice(1, None) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]
