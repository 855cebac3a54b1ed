"""Training photoshield's own weights: one shared loop (:mod:`training.loop`) and a script per model.

    python -m training.train_watermark ...     the watermark embedder and decoder
    python -m training.whiten_watermark ...    the watermark decoder's whitened read-out (closed form)
    python -m training.train_autoencoder ...   autoencoder-small
    python -m training.train_editors kontext|unet ...

Run from the repository root (``pip install -e ".[train]"``). The library never imports this package.
"""
