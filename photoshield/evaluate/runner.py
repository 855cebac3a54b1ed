"""The robustness runner: inputs x methods x attacks -> one row of measurements per cell.

    from photoshield.evaluate.runner import EvalConfig, run
    config = EvalConfig.from_dict({"inputs": ["faces"], "methods": ["facial:epsilon=8,preset=light", "dwtDctSvd"],
                                   "attacks": ["quick"], "output": "out"})
    summary = run(config)          # writes out/results.csv, out/results.json, out/report.html

A method turns a clean photo into a protected or watermarked one, once per (image, method);
every attack of the grid is then applied to it and measured: quality of the method's
output against the clean photo (PSNR, SSIM), the payload read back (bit accuracy,
binomial p-value, detected at the configured false-positive rate) for watermarks, and for
protections the identity under each face judge, segmentation agreement and edit damage.

Edit damage (``editing: {editor: PATH_OR_HUB_ID, kind: sd-img2img, prompt: "...", steps: N}``):
the editor is loaded once per process; the clean photo is edited once per image (the
reference: that image's edit seed, the configured prompt and settings), and every clean or
protection row edits its attacked copy the same way and compares the two edits:
``edit_psnr`` / ``edit_ssim`` / ``edit_rmse255`` (low PSNR = the protection broke the edit),
with a face in the clean photo ``edit_identity`` / ``edit_identity_clean`` (dlib-port
cosine of the attacked copy's / the clean photo's edit to the clean face; empty when that
edit has no face) and ``edit_face_lost`` (the attacked copy's edit has no face), and for Flux
Kontext ``edit_context_mass`` / ``edit_context_mass_ratio`` (attention mass to the photo's
tokens, and its ratio to the clean photo's). Watermark rows are not edited.

Rows are keyed by (image, method, attack, strength) and journaled as they finish
(``OUT/rows/rows-RANK.jsonl``), so a second run with the same settings skips rows already done.
``OUT/rows/run.json`` records the settings and the grid (images, methods, attacks, judges): a
folder holding a different run's results (other settings or judges, or a grid that leaves out
some of its images, methods or attacks) is refused, unless ``run(config, overwrite=True)``
(``--overwrite``) clears it first; a grid that only adds to the recorded one resumes and grows
it. A row that fails records ``error: ...`` in its status and the run goes on;
``RunSummary.failed`` / ``failures`` count them (the CLI exits 1 unless ``--allow-failures``). Under
``accelerate launch`` the images are split between the processes (one device each), and
the main process merges every journal into one report, in the grid's order, so one
process and many give the same files. Every random choice draws from a seed derived from
(seed, image, method, attack), never from the process or the order rows run in.

This module orchestrates; the parts live beside it: :mod:`.config` (the schema, method specs,
columns), :mod:`.grid` (inputs, attacks, row keys and seeds), :mod:`.methods` (one class per
method kind), :mod:`.judges` (face identity, segmentation, edit and payload scores),
:mod:`.journal` (the resumable journals and run record) and :mod:`.report` (CSV, JSON, HTML).
The names below are re-exported here, where ``from photoshield.evaluate.runner import ...`` finds them.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import PhotoshieldError
from ..metrics import psnr, ssim
from ..progress import tqdm
from .config import (
    BASE_COLUMNS,
    EDIT_COLUMNS,
    EDIT_FACE_COLUMNS,
    EDIT_FLUX_COLUMNS,
    JUDGES,
    SEGMENTATION_COLUMNS,
    EditingSpec,
    EvalConfig,
    MethodSpec,
    judge_columns,
    parse_method,
)
from .grid import attack_family, attack_strength, build_attacks, load_inputs, row_key, row_seed
from .journal import JournalWriter, key_of, merge, prepare_output, read_journals, run_record
from .judges import Judge, binomial_p_value, build_judges
from .methods import Method, Output, build_method
from .report import write_report

__all__ = [
    "BASE_COLUMNS",
    "EDIT_COLUMNS",
    "EDIT_FACE_COLUMNS",
    "EDIT_FLUX_COLUMNS",
    "JUDGES",
    "SEGMENTATION_COLUMNS",
    "EditingSpec",
    "EvalConfig",
    "MethodSpec",
    "RunSummary",
    "attack_family",
    "attack_strength",
    "binomial_p_value",
    "build_attacks",
    "judge_columns",
    "load_inputs",
    "parse_method",
    "row_seed",
    "run",
]


@dataclass
class RunSummary:
    """What a run did: ``rows`` in the report, ``computed`` now (all processes), ``skipped`` as already done.

    ``failed``: rows of the report whose status is ``error: ...``; ``failures``: (reason, count) per
    distinct reason, most frequent first. Both are filled on the main process, with ``files``.
    """

    rows: int
    computed: int
    skipped: int
    output: str
    files: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    failures: list[tuple[str, int]] = field(default_factory=list)


class _OneProcess:
    """The single process of a run without accelerate installed: what ``PartialState`` is for a plain ``python`` run."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def __init__(self, cpu: bool):
        self.device = torch.device("cpu" if cpu else "cuda")

    def wait_for_everyone(self) -> None:
        pass

    @contextlib.contextmanager
    def split_between_processes(self, items: list) -> Any:
        yield items


def _process_state(cpu: bool) -> Any:
    """accelerate's ``PartialState`` (one process or many, under ``accelerate launch``); one process without accelerate."""
    try:
        from accelerate import PartialState
    except ImportError:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise PhotoshieldError(
                "multi-process evaluation needs accelerate: pip install accelerate (or 'photoshield[train]')"
            ) from None
        return _OneProcess(cpu)
    return PartialState(cpu=cpu)


def run(config: EvalConfig, state: Any = None, overwrite: bool = False) -> RunSummary:
    """Run the grid of ``config`` (resuming), then write the merged CSV, JSON and HTML report on the main process.

    ``overwrite``: replace the results of a different run in the output folder instead of refusing it.
    """
    cpu = config.device == "cpu" or not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = state or _process_state(cpu)  # cpu: processes launched without GPUs talk over gloo
    device = torch.device(config.device) if config.device else state.device
    output = Path(config.output)
    journal_dir = output / "rows"
    if state.is_main_process:
        journal_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()

    specs = [parse_method(item) for item in config.methods]
    methods = list({spec.describe(): spec for spec in specs}.values())
    attack_list = build_attacks(config.attacks)
    inputs = load_inputs(config.inputs, config.max_inputs, config.max_side)
    prepare_output(output, run_record(config, inputs, methods, attack_list), state, overwrite)
    columns = config.columns()

    done = {key_of(row) for row in read_journals(journal_dir)}
    with state.split_between_processes(list(range(len(inputs)))) as mine:
        mine = list(mine)
    todo = [(index, spec, attack) for index in mine for spec in methods for attack in attack_list
            if row_key(inputs[index][0], spec.describe(), attack) not in done]
    if todo:
        _compute(config, todo, inputs, device, journal_dir, state)
    totals = _gather(state, len(todo))
    summary = RunSummary(rows=len(inputs) * len(methods) * len(attack_list), computed=int(sum(totals)), skipped=0, output=str(output))
    summary.skipped = summary.rows - summary.computed
    if state.is_main_process:
        rows = merge(read_journals(journal_dir), inputs, methods, attack_list)
        extra = sorted({key for row in rows for key in row} - set(columns))
        summary.files = write_report(rows, columns + extra, output, config=asdict(config))
        reasons = Counter(str(row["status"])[len("error:"):].strip() for row in rows if str(row.get("status", "")).startswith("error"))
        summary.failed = sum(reasons.values())
        summary.failures = reasons.most_common()
    state.wait_for_everyone()
    return summary


def _gather(state: Any, computed: int) -> list[int]:
    """The number of rows each process computed (all processes take part)."""
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        return gather_object([computed])
    return [computed]


def _compute(config: EvalConfig, todo: list[tuple[int, MethodSpec, Any]], inputs: list[tuple[str, torch.Tensor]],
             device: torch.device, journal_dir: Path, state: Any) -> None:
    """Apply each method once per image, then attack, measure and journal every row of ``todo`` in order."""
    built = {spec: build_method(spec, device) for spec in dict.fromkeys(spec for _, spec, _ in todo)}
    judges = build_judges(config, device)
    outputs: dict[tuple[int, MethodSpec], Output | str] = {}
    bar = tqdm(todo, desc=f"evaluate [{state.process_index}]", unit="row", disable=not config.progress or not state.is_main_process)
    with JournalWriter(journal_dir, state.process_index) as journal:
        for index, spec, attack in bar:
            name, clean = inputs[index]
            seed = row_seed(config.seed, name, spec.describe(), attack.describe())
            row: dict[str, Any] = {"image": name, "method": spec.describe(), "kind": spec.kind, "attack": attack.describe(),
                                   "family": attack_family(attack), "strength": attack_strength(attack), "seed": seed}
            if (index, spec) not in outputs:
                try:
                    outputs[index, spec] = built[spec].apply(clean, row_seed(config.seed, name, spec.describe()))
                except PhotoshieldError as error:  # recorded in the row's status; the run goes on
                    outputs[index, spec] = f"error: {error}"
            made = outputs[index, spec]
            if isinstance(made, str):
                row["status"] = made
            else:
                row.update(_measure(built[spec], judges, name, clean, made, attack, seed, config.fpr))
            journal.write(row)


def _measure(method: Method, judges: list[Judge], name: str, clean: torch.Tensor, made: Output, attack: Any, seed: int,
             fpr: float) -> dict[str, Any]:
    """The measurements of one row: quality, then the payload read back (watermarks) or every judge's scores."""
    row: dict[str, Any] = {"status": made.status}
    with torch.no_grad():
        attacked = attack(made.image, generator=torch.Generator().manual_seed(seed))
    row["psnr"] = float(psnr(clean, made.image)[0])
    row["ssim"] = float(ssim(clean, made.image)[0])
    row["attack_psnr"] = float(psnr(made.image, attacked)[0])
    try:
        if method.carries_payload:
            row.update(method.read_back(attacked, made, fpr))
        else:
            for judge in judges:
                row.update(judge.score(name, clean, attacked))
    except PhotoshieldError as error:  # recorded in the row's status (with the scores made so far); the run goes on
        row["status"] = f"error: {error}"
    return row
