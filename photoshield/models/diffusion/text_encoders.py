"""In-memory tokenizers and small text encoders: the text side of the small editors and of the test pipelines.

No tokenizer files can be had on these machines, so both tokenizers are built in memory: a byte-level
BPE CLIP tokenizer over the 256 byte symbols and a unigram T5 tokenizer over printable ASCII. The small
editors (:mod:`photoshield.models.diffusion.small_editors`) ship text encoders of these sizes (Kontext: random and
frozen; UNet: trained), and the tiny random pipelines of :mod:`photoshield.testing` use the same ones.
"""

from __future__ import annotations

import torch

__all__ = ["CLIP_LENGTH", "T5_LENGTH", "clip_tokenizer", "small_clip_text_encoder", "small_t5_encoder", "t5_tokenizer"]

CLIP_LENGTH = 77  # tokens per CLIP prompt, as in Stable Diffusion
T5_LENGTH = 32  # tokens per T5 prompt for the small Flux editors (real Flux uses up to 512)


def clip_tokenizer():
    """A byte-level BPE CLIP tokenizer whose vocabulary is the 256 byte symbols (no merges)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):  # sorted: alphabet() comes in hash order
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_LENGTH)


def t5_tokenizer():
    """A unigram T5 tokenizer over printable ASCII characters, built in memory."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for code in range(33, 127):
        pieces.append((chr(code), -3.0))
        pieces.append(("\u2581" + chr(code), -3.5))
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def small_clip_text_encoder(seed: int):
    """A 2-layer CLIP text encoder of width 32 (its pooled output feeds Flux)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=CLIP_LENGTH,
        hidden_act="gelu",
        projection_dim=32,
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config).eval()


def small_t5_encoder(seed: int):
    """A 2-layer T5 encoder of width 32."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=256,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()
