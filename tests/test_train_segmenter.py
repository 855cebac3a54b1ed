"""sam-distilled-small's trainer: LiteMedSAM targets are cached, a short run lowers the loss, exports, reloads."""

import json
import random

import pytest
import torch

from photoshield.models import load
from training.train_segmenter import SegmenterTrainConfig, TeacherCache, build_cache, export_student, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cache_train_resume_and_export(photos, tmp_path, monkeypatch):
    import training.train_segmenter as trainer

    monkeypatch.setattr(trainer, "heldout_prompts", lambda teacher, count: [])  # the held-out eval runs in the real trainer
    out = tmp_path / "run"
    assert build_cache(photos, out, crops=4, part_size=2, progress=False) == 4
    assert build_cache(photos, out, crops=4, part_size=2, progress=False) == 4  # already there: nothing recomputed
    cache = TeacherCache(out)
    assert len(cache.index) == 4
    batch = cache.batch(3, random.Random(0))
    assert batch["embedding"].shape == (3, 256, 64, 64) and batch["mask_logits"].shape == (3, 1, 256, 256)
    assert all(max(crop.shape[-2:]) == 256 for crop in batch["crops"])

    config = SegmenterTrainConfig(batch_size=2, lr=3e-3, warmup_steps=1, max_steps=6, minutes=5.0, eval_every=1000,
                                  log_every=3, mask_every=2)
    student = train(photos, out, config, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [row["embed"] for row in rows if row.get("stage") == "train"]
    assert len(losses) == 2 and losses[-1] < losses[0]
    resumed = train(photos, out, SegmenterTrainConfig(**{**config.__dict__, "max_steps": 7}), progress=False)
    assert [row["step"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if row["stage"] == "final"] == [6, 7]

    path = tmp_path / "student.safetensors"
    export_student(resumed, path)
    loaded = load("sam-distilled-small", path=path, verify=False, device="cpu")
    pixels = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(pixels).embedding, resumed.eval().encode(pixels).embedding, atol=5e-2)
    assert student is not None
