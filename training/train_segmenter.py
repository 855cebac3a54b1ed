"""Train ``sam-distilled-small``: a convolutional image encoder distilled from LiteMedSAM, on CPU.

The student (:class:`photoshield.models.sam.distilled.DistilledSam`) keeps LiteMedSAM's prompt encoder
and mask decoder (copied, frozen) and learns its own image encoder. LiteMedSAM is slow on a CPU (about
2.5 s a 256 px crop on one core), so its outputs are computed once, by ``--stage cache``, for random
crops of the training photos (any aspect ratio, long side 256 px) and stored under ``<out>/teacher/``
(the crop, its embedding and the mask logits of one random box prompt, float16); ``--stage train`` can
run beside it and picks up new parts as they are written. Each training step minimises

* the embedding error: mean squared error to LiteMedSAM's (B, 256, 64, 64) embedding, divided by the
  embedding's variance (so 1.0 is "predicts the mean"), and
* the mask error (every ``mask_every``-th step): for the cached box prompt of each crop, binary
  cross-entropy between the mask the shared decoder predicts from the student's embedding and
  LiteMedSAM's mask probabilities.

Every ``eval_every`` steps it measures what the registry entry reports: on held-out photos (the bundled
samples, never trained on), box prompts drawn from LiteMedSAM's own masks the way the deformation
benchmark draws them, the mIoU of the student's masks against LiteMedSAM's.

    python -m training.train_segmenter --stage cache --photos runs/watermark/photos --out runs/segmenter --crops 1500
    python -m training.train_segmenter --photos runs/watermark/photos --out runs/segmenter \\
        --minutes 60 --threads 1 --export runs/segmenter/sam_distilled_small.safetensors

Run it again with the same ``--out`` (and a larger ``--minutes``) to resume from ``<out>/checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from photoshield.data import sample, samples
from photoshield.image import resize_to
from photoshield.models import load
from photoshield.models.sam import Segmenter
from photoshield.models.sam.distilled import DistilledSam
from photoshield.models.sam.prompts import draw_prompts, mask_iou, predict_prompts
from training.loop import LoopSettings, PhotoCrops, StepResult, TrainingRun, load_checkpoint, run_arguments, warmup_cosine_lr

__all__ = ["SegmenterTrainConfig", "TeacherCache", "agreement", "build_cache", "export_student", "train"]


@dataclass
class SegmenterTrainConfig:
    """How long and how hard to train, and the loss weights."""

    batch_size: int = 8
    lr: float = 2e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 50
    mask_weight: float = 0.5
    mask_every: int = 4
    minutes: float = 60.0
    max_steps: int = 100_000
    checkpoint_minutes: float = 3.0
    eval_every: int = 250
    eval_photos: int = 6
    log_every: int = 10
    seed: int = 0


def random_crop(data: PhotoCrops, rng: random.Random, side: int = 256) -> torch.Tensor:
    """A (1, 3, h, w) crop in [0, 1] of random scale and aspect (0.6-1.6), long side ``side``, maybe mirrored."""
    image = data.photo(rng)
    height, width = image.shape[-2:]
    scale, aspect = rng.uniform(0.3, 1.0), rng.uniform(0.6, 1.6)
    crop_h = max(32, min(height, int(min(height, width) * scale * aspect ** 0.5)))
    crop_w = max(32, min(width, int(min(height, width) * scale / aspect ** 0.5)))
    top, left = rng.randrange(height - crop_h + 1), rng.randrange(width - crop_w + 1)
    crop = image[:, :, top : top + crop_h, left : left + crop_w].float() / 255
    factor = side / max(crop_h, crop_w)
    crop = resize_to(crop, (max(1, round(crop_h * factor)), max(1, round(crop_w * factor))))
    return (crop.flip(-1) if rng.random() < 0.5 else crop).clamp(0, 1)


def random_box(h: int, w: int, rng: random.Random) -> list[float]:
    """A box x0, y0, x1, y1 covering 15-90 % of each side of an (h, w) area."""
    bw, bh = rng.uniform(0.15, 0.9) * w, rng.uniform(0.15, 0.9) * h
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return [x0, y0, x0 + bw, y0 + bh]


def decode_boxes(model: Segmenter, embedding: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Low-resolution mask logits (B, 1, 256, 256): one (B, 4) model-input box per (B, 256, 64, 64) embedding."""
    logits, _ = model._decode(embedding, None, None, boxes.to(embedding), False)
    return logits


@torch.no_grad()
def build_cache(photos: str | Path, out: str | Path, crops: int, part_size: int = 16, seed: int = 0,
                progress: bool = True) -> int:
    """Add LiteMedSAM's outputs for random crops to ``<out>/teacher/part-SEED-NNNNN.safetensors`` until ``crops``
    of this seed are stored; returns how many there are. Each part holds ``pixels`` (n, 3, 256, 256) uint8 zero-padded crops,
    ``sizes`` (n, 2) their (h, w), ``embedding`` (n, 256, 64, 64) and ``boxes`` (n, 4) with ``mask_logits``
    (n, 1, 256, 256), float16. Interrupt it any time; a new run continues with a new seed per part."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    folder = Path(out) / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    teacher = load("sam-litemedsam", device="cpu")
    data = PhotoCrops(photos, 256, "train", seed=seed)
    mine = f"part-{seed:03d}-*.safetensors"  # one series per seed: several cache runs can share the folder
    done = sum(part_length(path) for path in sorted(folder.glob(mine)))
    bar = tqdm(total=crops, initial=done, desc="LiteMedSAM targets", disable=not progress)
    while done < crops:
        index = len(list(folder.glob(mine)))
        rng = random.Random(seed * 100_003 + index)
        batch = [random_crop(data, rng) for _ in range(part_size)]
        pixels, sizes = [], []
        for crop in batch:
            h, w = crop.shape[-2:]
            pixels.append(F.pad(crop, (0, 256 - w, 0, 256 - h)))
            sizes.append([h, w])
        embedding = torch.cat([teacher._embed(teacher.preprocess(crop)[0]) for crop in batch])
        boxes = torch.tensor([random_box(h, w, rng) for h, w in sizes])
        logits = decode_boxes(teacher, embedding, boxes)
        tensors = {"pixels": (torch.cat(pixels) * 255).round().to(torch.uint8), "sizes": torch.tensor(sizes),
                   "embedding": embedding.half(), "boxes": boxes.float(), "mask_logits": logits.half()}
        target = folder / f"part-{seed:03d}-{index:05d}.safetensors"
        temporary = target.with_name(target.name + ".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(temporary))
        temporary.replace(target)
        done += part_size
        bar.update(part_size)
    bar.close()
    return done


def part_length(path: Path) -> int:
    """How many crops a cache part holds."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.get_slice("sizes").get_shape()[0]


class TeacherCache:
    """The cached LiteMedSAM targets under ``<out>/teacher``, re-scanned for new parts on :meth:`refresh`."""

    def __init__(self, out: str | Path):
        self.folder = Path(out) / "teacher"
        self.parts: dict[str, dict[str, torch.Tensor]] = {}
        self.refresh()

    def refresh(self) -> int:
        """Load parts written since the last call; returns how many crops are held."""
        from safetensors.torch import load_file

        for path in sorted(self.folder.glob("part-*.safetensors")):
            if path.name not in self.parts:
                self.parts[path.name] = load_file(str(path))
        if not self.parts:
            raise SystemExit(f"{self.folder}: no LiteMedSAM targets yet; run with --stage cache first")
        self.index = [(name, row) for name, part in self.parts.items() for row in range(part["sizes"].shape[0])]
        return len(self.index)

    def batch(self, size: int, rng: random.Random) -> dict[str, Any]:
        """``size`` random cached crops: {"crops": list of (1, 3, h, w), "embedding", "boxes", "mask_logits"}."""
        picks = [self.index[rng.randrange(len(self.index))] for _ in range(size)]
        crops, rows = [], {"embedding": [], "boxes": [], "mask_logits": []}
        for name, row in picks:
            part = self.parts[name]
            h, w = part["sizes"][row].tolist()
            crops.append(part["pixels"][row : row + 1, :, :h, :w].float() / 255)
            for key in rows:
                rows[key].append(part[key][row : row + 1].float())
        return {"crops": crops, **{key: torch.cat(values) for key, values in rows.items()}}


def loss_terms(student: DistilledSam, batch: dict[str, Any], with_mask: bool, config: SegmenterTrainConfig) -> dict[str, torch.Tensor]:
    """The distillation loss and its parts for one cached batch."""
    target = batch["embedding"]
    embedding = student._embed(torch.cat([student.preprocess(crop)[0] for crop in batch["crops"]]))
    embed = F.mse_loss(embedding, target) / target.var().clamp_min(1e-8)
    terms = {"embed": embed}
    loss = embed
    if with_mask and config.mask_weight > 0:
        wanted = torch.sigmoid(batch["mask_logits"])
        mask = F.binary_cross_entropy_with_logits(decode_boxes(student, embedding, batch["boxes"]), wanted)
        terms["mask"] = mask
        loss = loss + config.mask_weight * mask
    terms["loss"] = loss
    return terms


def heldout_prompts(teacher: Segmenter, count: int) -> list[tuple[torch.Tensor, Any, dict[str, torch.Tensor]]]:
    """(photo, prompts, LiteMedSAM's masks) for the first ``count`` bundled photos, alternating scenes and faces."""
    names = [n for pair in zip(samples("scenes"), samples("faces")) for n in pair][:count]
    cases = []
    for name in names:
        photo = sample(name)
        prompts = draw_prompts(teacher, photo)
        cases.append((photo, prompts, predict_prompts(teacher, photo, prompts)))
    return cases


@torch.no_grad()
def agreement(student: Segmenter, cases: list[tuple[torch.Tensor, Any, dict[str, torch.Tensor]]]) -> dict[str, float]:
    """mIoU (and share with IoU >= 0.5) of the student's box-prompt masks against LiteMedSAM's on held-out photos."""
    was_training = student.training
    student.eval()
    ious = []
    for photo, prompts, reference in cases:
        if len(prompts) == 0:
            continue
        predicted = predict_prompts(student, photo, prompts)
        ious.append(mask_iou(predicted["box"], reference["box"]))
    student.train(was_training)
    ious = torch.cat(ious) if ious else torch.zeros(1)
    return {"heldout_miou": round(float(ious.mean()), 4), "heldout_iou50": round(float((ious >= 0.5).float().mean()), 4)}


def new_student(teacher: Segmenter, seed: int = 0) -> DistilledSam:
    """A student with a fresh encoder and the teacher's prompt encoder and mask decoder (frozen)."""
    torch.manual_seed(seed)
    student = DistilledSam()
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    student.prompt_encoder.requires_grad_(False)
    student.mask_decoder.requires_grad_(False)
    with torch.no_grad():  # start near the teacher embedding's scale (its values have a std of about 0.12)
        student.image_encoder.head[-1].weight.fill_(0.12)
    return student


def export_student(student: DistilledSam, path: str | Path) -> None:
    """Write the student's image encoder (float16, safetensors) to ``path`` atomically; the registry loader adds
    LiteMedSAM's prompt encoder and mask decoder."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in student.state_dict().items()
             if k.startswith("image_encoder.")}
    temporary = path.with_name(path.name + ".tmp")
    save_file(state, str(temporary), metadata={"format": "pt", "model": "sam-distilled-small"})
    temporary.replace(path)


def train(photos: str | Path, out: str | Path, config: SegmenterTrainConfig | None = None,
          export: str | Path | None = None, progress: bool = True) -> DistilledSam:
    """Train (or resume) under ``out``; returns the student and, with ``export``, writes it there."""
    config = config or SegmenterTrainConfig()
    run = TrainingRun(out, config.seed)
    teacher = load("sam-litemedsam", device="cpu")
    student = new_student(teacher, config.seed)
    cache = TeacherCache(out)
    rng = random.Random(config.seed)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=1e-4)
    if run.state is not None:
        student.load_state_dict(run.state["model"])
        optimizer.load_state_dict(run.state["optimizer"])
        step = run.resume()
        rng.seed(config.seed + step)
        torch.manual_seed(config.seed + step)
    cases = heldout_prompts(teacher, config.eval_photos)
    run.start()

    def checkpoint() -> dict[str, Any]:
        return {"model": student.state_dict(), "optimizer": optimizer.state_dict()}

    def train_step(step: int, fraction: float) -> StepResult:
        lr = warmup_cosine_lr(config.lr, step, fraction, config.warmup_steps, config.min_lr_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if step % 100 == 0:
            cache.refresh()
        with_mask = config.mask_every > 0 and step % config.mask_every == 0
        terms = loss_terms(student, cache.batch(config.batch_size, rng), with_mask, config)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return StepResult({key: float(value.detach()) for key, value in terms.items()}, fixed={"lr": round(lr, 7), "crops": len(cache.index)},
                          postfix={"embed": f"{float(terms['embed'].detach()):.3f}"})

    student.train()
    run.loop(train_step, LoopSettings.of(config), desc="segmenter", checkpoint=checkpoint,
             evaluate=lambda: agreement(student, cases), eval_at_start=run.state is None, progress=progress)
    run.save(checkpoint())
    run.write({"stage": "final", "step": run.step, **agreement(student, cases)})
    run.close()
    student.eval()
    if export is not None:
        export_student(student, export)
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description="Distil LiteMedSAM's image encoder into photoshield's convolutional segmenter.")
    run_arguments(parser, SegmenterTrainConfig, Path("runs/segmenter"), "segmenter")
    parser.add_argument("--mask-weight", type=float, default=SegmenterTrainConfig.mask_weight)
    parser.add_argument("--mask-every", type=int, default=SegmenterTrainConfig.mask_every, help="mask loss every N-th step (0: never)")
    parser.add_argument("--stage", choices=("train", "cache"), default="train",
                        help="cache: compute LiteMedSAM's targets for --crops random crops; train: distil from them")
    parser.add_argument("--crops", type=int, default=1500, help="--stage cache: how many crops to hold in all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.export_only:
        if args.export is None:
            parser.error("--export-only needs --export PATH")
        state = load_checkpoint(args.out / "checkpoint.pt")
        if state is None:
            raise SystemExit(f"{args.out / 'checkpoint.pt'}: no checkpoint to export; train first")
        student = DistilledSam()
        student.load_state_dict(state["model"])
        export_student(student, args.export)
        print(f"wrote {args.export} (step {state['step']})")
        return
    if args.stage == "cache":
        print(f"{build_cache(args.photos, args.out, args.crops, seed=args.seed)} crops in {args.out / 'teacher'}")
        return
    config = SegmenterTrainConfig(batch_size=args.batch_size, lr=args.lr, minutes=args.minutes, max_steps=args.max_steps,
                                  mask_weight=args.mask_weight, mask_every=args.mask_every, seed=args.seed)
    train(args.photos, args.out, config, export=args.export)


if __name__ == "__main__":
    main()
