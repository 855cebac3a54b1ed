"""The evaluation runner's parts: every method kind and face judge the config accepts is built, journals resume cleanly."""

import json
import math

import pytest
import torch

from photoshield.errors import PhotoshieldError
from photoshield.evaluate.config import JUDGES, EvalConfig, MethodSpec, parse_method
from photoshield.evaluate.grid import build_attacks, row_key
from photoshield.evaluate.journal import JournalWriter, key_of, merge, read_journals
from photoshield.evaluate.judges import FACE_JUDGES, payload_scores
from photoshield.evaluate.methods import METHOD_KINDS, CleanMethod, build_method


def test_every_parsed_method_kind_and_judge_has_a_class():
    kinds = {parse_method(name).kind for name in ("clean", "facial:eps=4", "dwtDct", "watermark")}
    assert kinds == set(METHOD_KINDS)
    for name in ("clean", "facial:eps=4", "dwtDct", "watermark"):
        spec = parse_method(name)
        method = build_method(spec, torch.device("cpu"))
        assert method.kind == spec.kind and method.carries_payload == (spec.kind in ("baseline", "watermark"))
    assert set(FACE_JUDGES) == set(JUDGES)
    with pytest.raises(PhotoshieldError, match="unknown method kind"):
        build_method(MethodSpec("glaze", "glaze"), torch.device("cpu"))


def test_clean_method_returns_the_photo_and_has_no_payload():
    photo = torch.rand(1, 3, 8, 8)
    method = CleanMethod(parse_method("clean"), torch.device("cpu"))
    made = method.apply(photo, seed=1)
    assert made.image is photo and made.status == "clean" and made.payload is None
    with pytest.raises(PhotoshieldError, match="no payload"):
        method.read_back(photo, made, 1e-6)


def test_payload_scores_count_matching_bits():
    payload = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 0]])
    exact = payload_scores(payload.clone(), payload, fpr=1e-2)
    assert exact["bit_accuracy"] == 1.0 and math.isclose(exact["p_value"], 2.0**-8) and exact["detected"]
    flipped = payload_scores(1 - payload, payload, fpr=1e-2)
    assert flipped["bit_accuracy"] == 0.0 and flipped["p_value"] == 1.0 and not flipped["detected"]


def test_journal_closes_a_cut_line_and_merges_in_grid_order(tmp_path):
    attacks = build_attacks(["jpeg:quality=50"])  # identity, jpeg
    rows = [{"image": image, "method": "clean", "attack": attack.describe(), "strength": strength, "psnr": torch.tensor(41.123456789)}
            for image in ("b", "a") for attack, strength in zip(attacks, (0.0, 0.5))]
    with JournalWriter(tmp_path, rank=0) as journal:
        journal.write(rows[0])
    with open(tmp_path / "rows-0.jsonl", "a", encoding="utf-8") as sink:
        sink.write('{"image": "b", "meth')  # an interrupted run
    with JournalWriter(tmp_path, rank=0) as journal:
        for row in rows[1:]:
            journal.write(row)
    read = read_journals(tmp_path)
    assert len(read) == 4 and read[0]["psnr"] == 41.1235  # the cut line skipped; numbers rounded to 6 digits
    assert json.loads((tmp_path / "rows-0.jsonl").read_text().splitlines()[2])["image"] == "b"  # the next row starts clean
    assert key_of(read[1]) == row_key("b", "clean", attacks[1])
    inputs = [("a", None), ("b", None)]
    merged = merge(read + read, inputs, [parse_method("clean")], attacks)  # duplicates from two journals count once
    assert [(row["image"], row["attack"]) for row in merged] == [("a", "identity"), ("a", "jpeg:quality=50"),
                                                                 ("b", "identity"), ("b", "jpeg:quality=50")]


def test_columns_follow_the_configured_judges():
    config = EvalConfig.from_dict({"judges": ["sface"], "segmenter": "sam-litemedsam"})
    assert config.columns()[-4:] == ["identity_sface", "identity_sface_same", "seg_miou", "seg_asr50"]
