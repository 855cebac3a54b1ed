"""The model registry: resolution order, checksums, safe loading, clear errors."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from photoshield.errors import ChecksumError, ModelNotFoundError, PhotoshieldError
from photoshield.models import registry


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)


def _loader(path: Path, device: torch.device):
    model = _Tiny()
    model.load_state_dict(registry.load_state_dict(path))
    model.source_path = path
    return model.to(device)


@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    """A registered checkpoint whose file lives in a temporary PHOTOSHIELD_HOME."""
    monkeypatch.setenv("PHOTOSHIELD_HOME", str(tmp_path / "home"))
    weights = tmp_path / "home" / "weights"
    weights.mkdir(parents=True)
    file = weights / "tiny-test.safetensors"
    save_file(_Tiny().state_dict(), str(file))
    entry = registry.register(
        registry.Checkpoint(
            name="tiny-test",
            task="test",
            filename="tiny-test.safetensors",
            loader=_loader,
            source="built in the test",
            license="Apache-2.0",
            sha256=registry.sha256_of(file),
            how_to_get="it is made by the test fixture",
        )
    )
    yield entry, file
    registry._REGISTRY.pop("tiny-test", None)


def test_load_from_user_cache_in_eval_mode(tiny_checkpoint):
    _, file = tiny_checkpoint
    model = registry.load("tiny-test", device="cpu")
    assert model.source_path == file
    assert not model.training


def test_explicit_path_wins(tiny_checkpoint, tmp_path):
    _, file = tiny_checkpoint
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(file.read_bytes())
    assert registry.load("tiny-test", device="cpu", path=copy).source_path == copy
    other = tmp_path / "other.safetensors"  # retrained weights of the same architecture
    save_file(_Tiny().state_dict(), str(other))
    with pytest.raises(ChecksumError, match="verify=False"):
        registry.load("tiny-test", device="cpu", path=other)
    assert registry.load("tiny-test", device="cpu", path=other, verify=False).source_path == other


def test_a_flipped_byte_in_an_explicit_path_is_refused(tiny_checkpoint, tmp_path):
    _, file = tiny_checkpoint
    data = bytearray(file.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data: safetensors itself would load it silently
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=str(flipped.name)):
        registry.load("tiny-test", device="cpu", path=flipped)


def test_a_corrupt_safetensors_header_names_the_file(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(PhotoshieldError, match="broken.safetensors"):
        registry.load_state_dict(broken)


def test_checksum_mismatch_is_reported(tiny_checkpoint):
    _, file = tiny_checkpoint
    save_file({k: v + 1 for k, v in _Tiny().state_dict().items()}, str(file))
    with pytest.raises(ChecksumError, match="sha256"):
        registry.load("tiny-test", device="cpu")


def test_missing_checkpoint_says_how_to_get_it(tiny_checkpoint):
    _, file = tiny_checkpoint
    file.unlink()
    with pytest.raises(ModelNotFoundError) as info:
        registry.load("tiny-test")
    assert "it is made by the test fixture" in str(info.value)
    assert "tiny-test.safetensors" in str(info.value)


def test_unknown_name_lists_known_names(tiny_checkpoint):
    with pytest.raises(ModelNotFoundError, match="tiny-test"):
        registry.load("no-such-model")


def test_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    file = tmp_path / "evil.pt"
    torch.save({"weight": Evil()}, file)
    with pytest.raises(PhotoshieldError, match="weights-only"):
        registry.load_state_dict(file)


BUNDLED = ("face-detector", "face-landmarks", "face-embedder", "face-judge-sface", "face-detector-yunet", "sam-litemedsam",
           "sam-distilled-small")
REPO = Path(__file__).resolve().parent.parent


def test_every_bundled_checkpoint_is_present_and_matches():
    entries = {e.name: e for e in registry.checkpoints()}
    assert set(BUNDLED) <= set(entries), f"missing registrations: {set(BUNDLED) - set(entries)}"
    for name in BUNDLED:
        file = registry.BUNDLED_DIR / entries[name].filename
        assert file.exists(), f"{name}: {file} is not bundled"
        assert entries[name].sha256, f"{name} must record its sha256"
        registry.verify(name, file)


def test_every_bundled_file_is_registered_and_in_the_notice():
    registered = {e.filename for e in registry.checkpoints()}
    files = sorted(registry.BUNDLED_DIR.iterdir())
    notice = (REPO / "NOTICE").read_text(encoding="utf-8")
    for file in files:
        assert file.name in registered, f"{file.name} is bundled but no checkpoint names it"
        assert file.name in notice, f"{file.name} has no license/attribution in NOTICE"
    # converted face/SAM models ~38 MB, the autoencoder 2.6 MB, the two small editors 22.5 MB (issue budget 40 MB),
    # room for the watermark (issue budget 30 MB), the distilled segmenter's encoder 2 MB
    assert sum(f.stat().st_size for f in files) < 105e6, "bundled weights above the 105 MB budget"


def test_notice_is_built_from_the_fragments():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notice", REPO / "tools" / "build_notice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (REPO / "NOTICE").read_text(encoding="utf-8") == module.build(), "run python tools/build_notice.py"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_load_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PHOTOSHIELD_HOME", "/nonexistent-photoshield-home")
    model = registry.load(name, device="cpu")
    assert model is not None
