"""Shared test settings: offline, deterministic, few threads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and two threads on a busy two-core machine run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A photos folder in the layout tools/fetch_training_photos.py writes (train/, heldout/), from small real photos."""
    from photoshield.data import sample
    from photoshield.image import resize_to
    from photoshield.io import write_image

    folder = tmp_path_factory.mktemp("photos")
    for split, names in (("train", ["chelsea", "coffee", "astronaut"]), ("heldout", ["rocket"])):
        (folder / split).mkdir()
        for name in names:
            image = sample(name)
            write_image(resize_to(image, (96, round(96 * image.shape[-1] / image.shape[-2]))), folder / split / f"{name}.png")
    return folder
