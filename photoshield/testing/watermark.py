"""A test-size watermark model: the real embedder and decoder classes with tiny random weights."""

from __future__ import annotations

import torch

from ..watermark.model import WatermarkConfig, WatermarkModel


def tiny_watermark(seed: int = 0) -> WatermarkModel:
    """A 32 px, 2-step ``WatermarkModel`` with random weights (seconds on a CPU), in eval mode.

        model = tiny_watermark(); model.save("tiny.safetensors")   # for --model in CLI tests
    """
    torch.manual_seed(seed)
    config = WatermarkConfig(size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                             norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2)
    return WatermarkModel(config).eval()
