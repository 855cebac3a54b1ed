"""TinyViT image encoder as LiteMedSAM configures it (written for photoshield, weights from LiteMedSAM).

LiteMedSAM's TinyViT differs from the ImageNet TinyViT-5M in one place: its stem is two
1x1 convolutions at full resolution (no stride), so a 256 px input gives the same 64x64
embedding grid as MobileSAM's 1024 px input. Stages (channels @ grid for 256 px):

=====  ======================  ======  =========================================
stage  blocks                  width   grid
=====  ======================  ======  =========================================
0      2 MBConv                64      256 -> downsample to 128
1      2 attention (window 7)  128     128 -> downsample to 64
2      6 attention (window 14) 160     64  -> "downsample" stride 1, 320 channels
3      2 attention (window 7)  320     64
neck   1x1 conv, LN, 3x3 conv, LN -> 256 channels @ 64x64
=====  ======================  ======  =========================================

Every block takes and returns a (B, C, H, W) map, so forward hooks on :attr:`TinyViT.blocks`
see spatial features directly. Parameter names follow the LiteMedSAM checkpoint.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map (SAM's neck and decoder norm)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by BatchNorm (keys ``c`` and ``bn`` as in the checkpoint)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every :class:`ConvBN` inside ``module`` into one biased convolution, in place; returns ``module``.

    For inference and attacks through a frozen model: BatchNorm in eval mode is a per-channel
    affine map, so ``conv(x) * scale + shift`` becomes one convolution with scaled weights and a
    bias. Outputs agree to float rounding (about 1e-6) and a forward+backward skips the norm.

    Example:
        >>> block = ConvBN(3, 8).eval()
        >>> x = torch.rand(1, 3, 4, 4)
        >>> reference = block(x)
        >>> holder = nn.Sequential(block)
        >>> torch.allclose(fold_batchnorm(holder)(x), reference, atol=1e-6)
        True
    """
    for name, child in module.named_children():
        if isinstance(child, ConvBN):
            conv, norm = child.c, child.bn
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                folded.bias.copy_(norm.bias - norm.running_mean * scale)
            folded.requires_grad_(conv.weight.requires_grad)
            setattr(module, name, folded)
        else:
            fold_batchnorm(child)
    return module


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand: float = 4.0):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Stage transition: 1x1 conv, depthwise 3x3 (stride 2, or 1 into the last stage), 1x1 conv."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a square window, with a learned bias per |dy|,|dx| offset.

    The pre-norm lives inside the module (as in the checkpoint), and q, k, v are interleaved
    per head in the ``qkv`` projection.
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        # Offset (|dy|, |dx|) of two window positions indexes the bias table at |dy| * window + |dx|.
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        index = (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("bias_index", index, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape
        qkv = self.qkv(self.norm(tokens)).view(batch, length, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).split(self.head_dim, dim=-1)
        bias = self.attention_biases[:, self.bias_index].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(batch, length, -1))


class Mlp(nn.Module):
    """Pre-norm two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows), depthwise 3x3 conv, MLP; on (B, C, H, W)."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.window
        pad_h, pad_w = (-h) % s, (-w) % s
        grid = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_w, 0, pad_h))  # (B, H', W', C)
        nh, nw = grid.shape[1] // s, grid.shape[2] // s
        windows = grid.view(b, nh, s, nw, s, c).transpose(2, 3).reshape(b * nh * nw, s * s, c)
        windows = self.attn(windows)
        grid = windows.view(b, nh, nw, s, s, c).transpose(2, 3).reshape(b, nh * s, nw * s, c)
        return grid[:, :h, :w].permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._windowed_attention(x)
        x = self.local_conv(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.mlp(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class Stage(nn.Module):
    """A list of blocks and an optional downsampling transition at the end."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """LiteMedSAM's TinyViT encoder: (B, 3, S, S) normalised pixels -> (B, 256, S/4, S/4) embedding."""

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        windows: Sequence[int] = (7, 7, 14, 7),
        out_channels: int = 256,
    ):
        super().__init__()
        d0 = embed_dims[0]
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(ConvBN(3, d0 // 2), nn.GELU(), ConvBN(d0 // 2, d0))
        stages = []
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            if i == 0:
                blocks = [MBConv(dim) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dim, num_heads[i], windows[i]) for _ in range(depth)]
            downsample = None
            if i < len(embed_dims) - 1:
                # Stride 1 into the last stage keeps the embedding at 1/4 of the input side.
                stride = 1 if i == len(embed_dims) - 2 else 2
                downsample = PatchMerging(dim, embed_dims[i + 1], stride)
            stages.append(Stage(blocks, downsample))
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_channels, 1, bias=False),
            LayerNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            LayerNorm2d(out_channels),
        )

    @property
    def blocks(self) -> list[nn.Module]:
        """All encoder blocks in order (2 MBConv + 10 attention blocks); hook targets for features."""
        return [block for stage in self.layers for block in stage.blocks]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.seq(pixels)
        for stage in self.layers:
            x = stage(x)
        return self.neck(x)
