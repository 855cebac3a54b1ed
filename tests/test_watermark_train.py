"""The watermark trainer end to end on a tiny model: logs, checkpoints, resumes and exports loadable weights."""

import json

import pytest
import torch

from photoshield.watermark.model import WatermarkConfig, WatermarkModel
from photoshield.watermark.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")




def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_training_runs_resumes_and_exports(photos, tmp_path):
    tiny = WatermarkConfig(n_bits=96, size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                           norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2)
    settings = dict(batch_size=2, max_steps=12, warmup_steps=4, rms_anneal_steps=10, cover_sizes=(32, 48),
                    eval_every=1000, log_every=4, minutes=5.0)
    out = tmp_path / "run"
    train(photos, out, TrainConfig(**settings), model_config=tiny, progress=False)
    rows = _rows(out / "metrics.jsonl")
    steps = [row["step"] for row in rows if row["stage"] == "watermark"]
    assert steps == [4, 8, 12]
    final = rows[-1]
    assert final["stage"] == "final" and 0 <= final["val_acc_clean"] <= 1 and final["val_psnr"] > 20

    export = tmp_path / "wm.safetensors"
    settings["max_steps"] = 16
    train(photos, out, TrainConfig(**settings), export=export, progress=False)  # resumes at step 12
    steps = [row["step"] for row in _rows(out / "metrics.jsonl") if row["stage"] == "watermark"]
    assert steps == [4, 8, 12, 16]
    model = WatermarkModel.from_file(export)
    assert model.config.size == 32 and model.decode(torch.rand(1, 3, 40, 56)).shape == (1, 96)
