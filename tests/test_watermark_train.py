"""The watermark trainer end to end on a tiny model: logs, checkpoints, resumes and exports loadable weights."""

import json

import pytest
import torch

from photoshield.watermark.model import WatermarkConfig, WatermarkModel
from training.train_watermark import TrainConfig, train

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


def test_init_keeps_matching_tensors_and_resamples_the_message_pattern(tmp_path):
    from dataclasses import replace

    from training.train_watermark import initial_weights

    torch.manual_seed(0)
    small = WatermarkConfig(n_bits=96, size=32, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=4,
                            norm_num_groups=4, decoder_channels=(8, 16), sampling_steps=2, message_skip_size=8,
                            decoder_linear_size=8)
    source = WatermarkModel(small).eval()
    path = tmp_path / "source.safetensors"
    source.save(path)
    finer = WatermarkModel(replace(small, message_skip_size=16, decoder_linear_size=16)).eval()
    assert initial_weights(finer, path) == []  # nothing left as built: the pattern and read-out are resampled
    assert torch.equal(finer.embedder.unet.conv_in.weight, source.embedder.unet.conv_in.weight)
    old_pattern = source.embedder.message_skip.weight[:, 0].view(1, 3, 8, 8)
    new_pattern = finer.embedder.message_skip.weight[:, 0].view(1, 3, 16, 16)
    back = torch.nn.functional.avg_pool2d(new_pattern, 2)  # the resampled pattern, at the old side again
    assert torch.nn.functional.cosine_similarity(back.flatten(), old_pattern.flatten(), dim=0) > 0.8
    wider = WatermarkModel(replace(small, decoder_channels=(8, 24))).eval()
    assert any(name.startswith("decoder.features") for name in initial_weights(wider, path))
