"""Diffusion watermark embedder and decoder with calibrated verification (built in a later issue)."""
