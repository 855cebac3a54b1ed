"""Same-person thresholds of every identity model, calibrated on a labelled corpus of real faces.

The corpus is written by ``tools/fetch_face_photos.py`` (``runs/faces/manifest.json``): one crop per
face, with its identity, from photos and talking-face videos that registry packages ship. Every face
is embedded by each model, and every pair of faces scored (crops listed as ``duplicate_of`` another
file are left out). Pairs are:

* ``photo``: two photos of one person (different photographs);
* ``video-far``: two frames of one person at least ``--near-seconds`` (2 s) apart, or from different
  videos; ``video-near``: frames closer than that, near-duplicates, reported apart and never used;
* ``different``: faces of two different people (faces of one group photo included).

**Calibration and held-out pairs.** Pairs of two ``calibration`` faces choose the threshold; pairs
that involve a face of a photo behind photoshield's bundled samples (``split: bundled``: Obama x3,
Biden, Collins, Hopper, Einstein and the man behind him, Barbara) are held out and only measured.
``--calibrate-on all`` calibrates on every pair instead (nothing held out).

**Rule.** Scores are similarities (cosine; the dlib models' Euclidean distance negated). On the
calibration pairs, same = ``photo`` + ``video-far``, different = ``different``. If every same-person
score lies above every different-person score, the threshold is the midpoint between the lowest
same-person and the highest different-person score (rule ``midpoint``). Otherwise it is the lowest
threshold whose false-positive rate is at most ``--fpr`` (1 %), placed midway between the highest
different-person score it must reject and the next higher score (rule ``fpr<=1%``). The FPR is
balanced over identity pairs: every pair of identities weighs the same, however many faces each has
(otherwise the 90 video frames of two people would make up most different-person pairs); the plain
pair-count FPR is reported beside it. Same person: score >= threshold (distance <= threshold).

Models: the dlib ResNet port ``face-embedder`` (Euclidean distance; dlib's convention: same person
below 0.6), the SFace judge ``face-judge-sface`` (cosine; OpenCV's 0.363), the four ports of
:mod:`photoshield.models.face.description` (cosine; no conventional threshold) and, where the
``judges`` extra is installed, ``dlib`` itself (distance, 0.6). Faces are located by the detector's
box and 5 landmarks stored in the manifest: the dlib port finds its 68 landmarks in that box; SFace
takes YuNet's landmarks of the face at that box (the stored MTCNN landmarks where YuNet misses it);
the ``human`` ports take the square 1.4x crop of that box (:func:`crop_faces`); dlib takes its HOG
detection at that box (the box itself where HOG misses it). A model that does not load is reported
and skipped.

    python benchmarks/calibrate_face_thresholds.py [--manifest runs/faces/manifest.json]
        [--models face-embedder face-judge-sface ...] [--fpr 0.01] [--json benchmarks/results/face_thresholds.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from _common import REPO, stamp

DEFAULT_MODELS = ("face-embedder", "face-judge-sface", "face-faceres", "face-faceres-deep", "face-mobilefacenet",
                  "face-mobileface", "dlib")  # fmt: skip
CONVENTIONAL = {"face-embedder": 0.6, "face-judge-sface": 0.363, "dlib": 0.6}  # native units
SAME_KINDS = ("photo", "video-far")  # what the threshold is based on


# --------------------------------------------------------------------------- corpus


@dataclasses.dataclass
class Face:
    file: Path
    identity: str
    split: str
    kind: str
    video: str | None
    time_s: float | None
    box: list[float]
    landmarks: list[list[float]]


def load_corpus(manifest: Path) -> list[Face]:
    """The manifest's faces, less the crops of duplicate files."""
    rows = json.loads(manifest.read_text())["faces"]
    return [
        Face(manifest.parent / row["file"], row["identity"], row["split"], row["kind"], row.get("video"),
             row.get("time_s"), row["box"], row["landmarks"])
        for row in rows
        if row.get("duplicate_of") is None
    ]  # fmt: skip


@dataclasses.dataclass
class Pairs:
    """Every unordered pair of faces: indices, kind, whether held out, and its weight among different pairs."""

    first: np.ndarray
    second: np.ndarray
    kind: np.ndarray  # "photo" | "video-near" | "video-far" | "different"
    held_out: np.ndarray  # bool: involves a face of a bundled sample's photo
    weight: np.ndarray  # different pairs: 1 / (pairs of the same two identities in the same set); others 1


def make_pairs(faces: list[Face], near_seconds: float, hold_out_bundled: bool = True) -> Pairs:
    """Every pair of ``faces``; with ``hold_out_bundled=False`` no pair is held out (all calibrate)."""
    first, second, kinds, held = [], [], [], []
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            a, b = faces[i], faces[j]
            if a.identity != b.identity:
                kind = "different"
            elif a.kind == "video" and b.kind == "video":
                near = a.video == b.video and abs(a.time_s - b.time_s) < near_seconds
                kind = "video-near" if near else "video-far"
            else:
                kind = "photo"
            first.append(i), second.append(j), kinds.append(kind)
            held.append(hold_out_bundled and (a.split == "bundled" or b.split == "bundled"))
    kind, held_out = np.array(kinds), np.array(held, dtype=bool)
    cells = [(h, *sorted((faces[i].identity, faces[j].identity))) for i, j, h in zip(first, second, held)]
    counts = Counter(cell for cell, k in zip(cells, kinds) if k == "different")
    weight = np.array([1.0 / counts[cell] if k == "different" else 1.0 for cell, k in zip(cells, kinds)])
    return Pairs(np.array(first), np.array(second), kind, held_out, weight)


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class Model:
    name: str
    metric: str  # "distance" (same below) | "cosine" (same above)
    embed: Callable[[Face], np.ndarray]
    notes: Counter


def _tensor(path: Path) -> torch.Tensor:
    array = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))


def _nearest(boxes: np.ndarray, box: list[float]) -> int | None:
    """The detection whose centre lies nearest the stored box's centre, if inside that box."""
    if len(boxes) == 0:
        return None
    x1, y1, x2, y2 = box
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = np.linalg.norm(centres - [(x1 + x2) / 2, (y1 + y2) / 2], axis=1)
    best = int(distance.argmin())
    return best if distance[best] < max(x2 - x1, y2 - y1) / 2 else None


def load_model(name: str) -> Model:
    """The named identity model as an embed(face) function; raises when it cannot be loaded."""
    notes: Counter = Counter()
    if name == "face-embedder":
        from photoshield.models import face

        embedder, landmarker = face.cached_model("face-embedder", torch.device("cpu")), face.cached_model(
            "face-landmarks", torch.device("cpu"))  # fmt: skip

        def embed(item: Face) -> np.ndarray:
            with torch.no_grad():
                out = face.embed_faces(_tensor(item.file), boxes=torch.tensor([item.box]), embedder=embedder,
                                       landmarker=landmarker)  # fmt: skip
            return out[0].numpy()

        return Model(name, "distance", embed, notes)
    if name == "face-judge-sface":
        from photoshield.models import load

        judge = load("face-judge-sface", device="cpu")

        def embed_sface(item: Face) -> np.ndarray:
            rgb = _rgb(item.file)
            found = judge.detect(rgb)
            best = _nearest(found["boxes"], item.box)
            if best is None:
                notes["YuNet missed the face: MTCNN landmarks used"] += 1
                return judge.embed(rgb, landmarks=np.asarray(item.landmarks))
            return judge.embed(rgb, landmarks=found["landmarks"][best])

        return Model(name, "cosine", embed_sface, notes)
    if name == "dlib":
        from photoshield.models.face.judge import DlibJudge

        judge = DlibJudge()  # raises PhotoshieldError without the judges extra
        import dlib

        def embed_dlib(item: Face) -> np.ndarray:
            rgb = _rgb(item.file)
            found = judge.detector(rgb, 0) or judge.detector(rgb, 1)
            boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in found], dtype=np.float64)
            best = _nearest(boxes.reshape(-1, 4), item.box)
            if best is None:
                notes["HOG missed the face: MTCNN box used"] += 1
                rect = dlib.rectangle(*(round(v) for v in item.box))
            else:
                rect = found[best]
            shape = judge.predictor(rgb, rect)
            return np.asarray(judge.recognizer.compute_face_descriptor(rgb, shape), dtype=np.float32)

        return Model(name, "distance", embed_dlib, notes)
    from photoshield.models.face.description import crop_faces, load_description

    model = load_description(name, device="cpu")

    def embed_description(item: Face) -> np.ndarray:
        with torch.no_grad():
            crops = crop_faces(_tensor(item.file), torch.tensor([item.box]), size=model.input_size)
            return model(crops)[0].numpy()

    return Model(name, "cosine", embed_description, notes)


def similarities(metric: str, embeddings: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Per pair: cosine, or the negated Euclidean distance (higher = more alike either way)."""
    a, b = embeddings[pairs.first].astype(np.float64), embeddings[pairs.second].astype(np.float64)
    if metric == "distance":
        return -np.linalg.norm(a - b, axis=1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


# --------------------------------------------------------------------------- thresholds


def choose_threshold(same: np.ndarray, different: np.ndarray, weight: np.ndarray, fpr: float) -> tuple[float, str]:
    """The similarity threshold (same person: score >= threshold) and the rule that gave it (see the module notes)."""
    if len(same) == 0 or len(different) == 0:
        raise ValueError("a threshold needs both same-person and different-person pairs")
    if same.min() > different.max():
        return float((same.min() + different.max()) / 2), "midpoint"
    order = np.argsort(-different, kind="stable")
    ranked, share = different[order], np.cumsum(weight[order]) / weight.sum()
    allowed = int(np.searchsorted(share, fpr + 1e-12, side="right"))  # the top `allowed` may be accepted
    while 0 < allowed < len(ranked) and ranked[allowed - 1] == ranked[allowed]:
        allowed -= 1  # ties: a threshold cannot accept one of two equal scores
    reject = ranked[allowed] if allowed < len(ranked) else -np.inf
    above = np.concatenate([same, different])
    above = above[above > reject]
    threshold = (reject + above.min()) / 2 if len(above) else reject + 1e-6
    return float(threshold), f"fpr<={fpr:.0%}"


def rates(scores: np.ndarray, pairs: Pairs, threshold: float, held_out: bool) -> dict[str, Any]:
    """Counts, TPR per same-person kind and FPR (balanced and plain) at ``threshold`` in one set of pairs."""
    chosen = pairs.held_out == held_out
    out: dict[str, Any] = {}
    for kind in ("photo", "video-far", "video-near"):
        mask = chosen & (pairs.kind == kind)
        out[kind] = {"pairs": int(mask.sum()), "tpr": float((scores[mask] >= threshold).mean()) if mask.any() else None}
    mask = chosen & (pairs.kind == "different")
    accepted = scores[mask] >= threshold
    out["different"] = {
        "pairs": int(mask.sum()),
        "identity_pairs": round(float(pairs.weight[mask].sum())),
        "fpr": float(np.average(accepted, weights=pairs.weight[mask])) if mask.any() else None,
        "fpr_plain": float(accepted.mean()) if mask.any() else None,
    }
    return out


def summarise(scores: np.ndarray, pairs: Pairs, held_out: bool) -> dict[str, Any]:
    """Where the scores lie: per kind min / median / max."""
    out = {}
    for kind in ("photo", "video-far", "video-near", "different"):
        values = scores[(pairs.held_out == held_out) & (pairs.kind == kind)]
        if len(values):
            out[kind] = {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
    return out


def named_pairs(scores: np.ndarray, pairs: Pairs, faces: list[Face], metric: str, mask: np.ndarray,
                top: int | None = None) -> list[dict[str, Any]]:
    """The pairs in ``mask`` with their files and scores in the model's units; ``top``: only the most alike."""
    chosen = np.flatnonzero(mask)
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")][:top]
    return [{"a": faces[pairs.first[k]].file.name, "b": faces[pairs.second[k]].file.name,
             "held_out": bool(pairs.held_out[k]), "score": round(native(metric, float(scores[k])), 4)}
            for k in chosen]  # fmt: skip


def native(metric: str, similarity: float) -> float:
    """A similarity threshold in the model's own units (distances are negated similarities)."""
    return -similarity if metric == "distance" else similarity


# --------------------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %" if value in (0, 1) else f"{100 * value:.1f} %"


def _threshold(value: float) -> str:
    return f"{value:.6f}" if abs(1 - abs(value)) < 1e-3 else f"{value:.3f}"  # cosines that all lie near 1


def table(results: dict[str, dict], key: str) -> list[str]:
    """Markdown table of pair counts and TPR/FPR at the chosen (``key="chosen"``) or conventional threshold."""
    lines = [
        (
            "| model | threshold | rule | same pairs (photo + video ≥2 s) | TPR photo | TPR video ≥2 s "
            "| TPR video <2 s | different pairs (identity pairs) | FPR balanced | FPR pairs "
            "| held-out same / different | held-out TPR | held-out FPR balanced |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if key not in result:
            continue
        at = result[key]
        cal, held = at["calibration"], at["held_out"]
        sign = "distance ≤" if result["metric"] == "distance" else "cosine ≥"
        lines.append(
            f"| {name} | {sign} {_threshold(at['threshold'])} | {at['rule']} "
            f"| {cal['photo']['pairs']} + {cal['video-far']['pairs']} | {_pct(cal['photo']['tpr'])} "
            f"| {_pct(cal['video-far']['tpr'])} | {_pct(cal['video-near']['tpr'])} "
            f"| {cal['different']['pairs']} ({cal['different']['identity_pairs']}) | {_pct(cal['different']['fpr'])} "
            f"| {_pct(cal['different']['fpr_plain'])} | {held['photo']['pairs']} / {held['different']['pairs']} "
            f"| {_pct(held['photo']['tpr'])} | {_pct(held['different']['fpr'])} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "runs" / "faces" / "manifest.json")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--fpr", type=float, default=0.01, help="false-positive rate the threshold allows")
    parser.add_argument("--near-seconds", type=float, default=2.0, help="video frames closer than this: near pairs")
    parser.add_argument("--calibrate-on", choices=("calibration", "all"), default="calibration",
                        help="'all': the bundled samples' pairs calibrate too (nothing is held out)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "face_thresholds.json")
    args = parser.parse_args()
    if not args.manifest.exists():
        parser.error(f"{args.manifest} not found: write the corpus first with python tools/fetch_face_photos.py")
    torch.set_num_threads(args.threads)

    faces = load_corpus(args.manifest)
    pairs = make_pairs(faces, args.near_seconds, hold_out_bundled=args.calibrate_on == "calibration")
    counts = {
        f"{kind} ({'held-out' if held else 'calibration'})": int(
            np.sum((pairs.kind == kind) & (pairs.held_out == held))
        )
        for held in (False, True)
        for kind in ("photo", "video-far", "video-near", "different")
    }
    corpus = {
        "manifest": str(args.manifest.relative_to(REPO) if args.manifest.is_relative_to(REPO) else args.manifest),
        "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(),
        "faces": len(faces),
        "faces_by_split": dict(Counter(face.split for face in faces)),
        "photo_faces": sum(face.kind == "photo" for face in faces),
        "video_frames": sum(face.kind == "video" for face in faces),
        "identities": len({face.identity for face in faces}),
        "pairs": counts,
    }
    print(f"{len(faces)} faces ({corpus['photo_faces']} from photos, {corpus['video_frames']} video frames), "
          f"{corpus['identities']} identities; pairs: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"threshold basis: {args.calibrate_on} pairs, same = photo + video >= {args.near_seconds:g} s, FPR "
          f"balanced over identity pairs, target {args.fpr:.0%}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")

    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name in args.models:
        try:
            model = load_model(name)
        except Exception as error:  # noqa: BLE001  (a model that does not load is reported, not fatal)
            skipped[name] = f"{type(error).__name__}: {error}"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
            continue
        start = time.perf_counter()
        embeddings = np.stack([model.embed(face) for face in faces])
        seconds = time.perf_counter() - start
        scores = similarities(model.metric, embeddings, pairs)
        calibration = ~pairs.held_out
        same = calibration & np.isin(pairs.kind, SAME_KINDS)
        different = calibration & (pairs.kind == "different")
        threshold, rule = choose_threshold(scores[same], scores[different], pairs.weight[different], args.fpr)
        result: dict[str, Any] = {
            "metric": model.metric,
            "embedding_dim": int(embeddings.shape[1]),
            "seconds_per_face": round(seconds / len(faces), 4),
            "chosen": {"threshold": native(model.metric, threshold), "rule": rule,
                       "calibration": rates(scores, pairs, threshold, False),
                       "held_out": rates(scores, pairs, threshold, True)},
            "scores": {"calibration": summarise(scores, pairs, False), "held_out": summarise(scores, pairs, True)},
            "notes": dict(model.notes),
        }
        result["photo_pairs"] = named_pairs(scores, pairs, faces, model.metric, pairs.kind == "photo")
        result["closest_different"] = named_pairs(scores, pairs, faces, model.metric, pairs.kind == "different", top=5)
        if model.metric == "distance":  # summaries in the model's own units
            result["scores"] = {split: {kind: {"min": -stats["max"], "median": -stats["median"], "max": -stats["min"]}
                                        for kind, stats in by_kind.items()}
                                for split, by_kind in result["scores"].items()}  # fmt: skip
        if name in CONVENTIONAL:
            conventional = CONVENTIONAL[name]
            similarity = -conventional if model.metric == "distance" else conventional
            result["conventional"] = {"threshold": conventional, "rule": "convention",
                                      "calibration": rates(scores, pairs, similarity, False),
                                      "held_out": rates(scores, pairs, similarity, True)}  # fmt: skip
        results[name] = result
        print(f"{name}: {len(faces)} faces in {seconds:.1f} s"
              + (f" ({', '.join(f'{k}: {v}' for k, v in model.notes.items())})" if model.notes else ""),
              file=sys.stderr)  # fmt: skip

    print("At the calibrated threshold (same person: score at or past it):\n")
    print("\n".join(table(results, "chosen")))
    print("\nAt the conventional threshold:\n")
    print("\n".join(table(results, "conventional")))
    for name, reason in skipped.items():
        print(f"\n{name}: not measured ({reason})")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"stamp": stamp("cpu"), "corpus": corpus, "settings": {"fpr": args.fpr, "near_seconds": args.near_seconds,
              "basis": f"{args.calibrate_on} pairs; same = photo + video-far; FPR balanced over identity pairs"},
              "models": results, "skipped": skipped}  # fmt: skip
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
