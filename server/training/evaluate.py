"""WER per task for backbone-only, HRA linear, HRA FFN and the residual adapter.

Test sets: each synthetic domain's held-out split (regenerated from its seed
if absent) and FSDD takes 30-39 per speaker. The table this prints is the one in
docs/results.md; the JSON it writes is the record. Tasks whose linear head names a
vocabulary are scored twice: greedy (the main table) and restricted to that
vocabulary, for every variant alike, backbone included (a second table).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jiwer
import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadRecord
from server.data import synthetic
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.data.manifest import Utterance, read_manifest
from server.models.checkpoint import load_model
from server.models.ctc.inference import decode, forward_features
from server.models.hra import HRAModel
from server.training.data import FeatureSet

logger = logging.getLogger(__name__)

VARIANTS = {  # column name -> head store folder under the model dir (None: no head)
    "backbone": None,
    "hra_linear": "heads",
    "hra_ffn": "baselines/ffn",
    "residual": "baselines/residual",
}


@dataclass(frozen=True)
class TaskResult:
    task: str
    utterances: int
    wer: dict[str, float]  # variant -> WER, greedy decoding
    params: dict[str, int]  # variant -> per-task parameters
    wer_vocabulary: dict[str, float]  # variant -> WER within the task's vocabulary ({}: none)


def test_utterances(data_dir: Path, fsdd_root: Path) -> list[Utterance]:
    rows = []
    for domain in synthetic.ADAPTATION_DOMAINS:
        manifest = data_dir / domain / "test.jsonl"
        if not manifest.exists():  # regenerated from its seeds: the same utterances
            synthetic.generate_domain(
                data_dir, domain, "test", synthetic.split_size(domain, "test")
            )
        rows += read_manifest(manifest)
    return rows + load_fsdd(fsdd_root, TEST_TAKES)


def evaluate(
    model_dir: Path, data_dir: Path, fsdd_root: Path, batch_size: int = 32
) -> list[TaskResult]:
    model, _ = load_model(model_dir / "model.safetensors")
    stores = {v: DiskStore(model_dir / f) for v, f in VARIANTS.items() if f is not None}
    utterances = test_utterances(data_dir, fsdd_root)
    data = FeatureSet.build(utterances, model.backbone.featurize, desc="test features")
    results = []
    for task_index, task in enumerate(tqdm(data.task_ids, desc="evaluate")):
        idx = [i for i, t in enumerate(data.tasks) if t == task_index]
        vocabulary = stores["hra_linear"].get(task).meta.vocabulary
        wer, wer_vocabulary, params = {}, {}, {}
        for variant in VARIANTS:
            head = stores[variant].get(task) if variant in stores else None
            params[variant] = head.num_parameters if head else 0
            feats, refs = [data.features[i] for i in idx], [data.texts[i] for i in idx]
            wer[variant], constrained = wers(model, feats, refs, head, vocabulary, batch_size)
            if constrained is not None:
                wer_vocabulary[variant] = constrained
        results.append(TaskResult(task, len(idx), wer, params, wer_vocabulary))
    return results


def wers(
    model: HRAModel,
    feats: list[torch.Tensor],
    refs: list[str],
    head: HeadRecord | None,
    vocabulary: tuple[str, ...],
    batch_size: int = 32,
    between: Callable[[], None] | None = None,
) -> tuple[float, float | None]:
    """WER greedy, and within `vocabulary` (None if empty), from one forward per chunk;
    `between` runs before every chunk (it may raise to stop a job)."""
    greedy, constrained = [], []
    for start in range(0, len(feats), batch_size):
        if between is not None:
            between()
        chunk = feats[start : start + batch_size]
        logits, lengths = forward_features(model, chunk, [head] * len(chunk))
        fs = model.backbone.frame_seconds
        greedy += [d.text for d in decode(logits, lengths, [()] * len(chunk), fs)]
        if vocabulary:
            constrained += [d.text for d in decode(logits, lengths, [vocabulary] * len(chunk), fs)]
    return jiwer.wer(refs, greedy), jiwer.wer(refs, constrained) if vocabulary else None


def format_table(
    results: list[TaskResult], cols: list[str] | None = None, reference: str = "backbone"
) -> str:
    """WER per task and variant (`cols`, default this module's VARIANTS), the linear
    head's relative reduction against `reference`, means and parameters per task. Any
    results with `task`, `utterances`, `wer` and `params` (the Whisper table too)."""
    cols = cols or list(VARIANTS)
    lines = [
        "| task | n | " + " | ".join(f"WER {c}" for c in cols) + " | rel. reduction (linear) |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]
    for r in results:
        base = r.wer[reference]
        reduction = (base - r.wer["hra_linear"]) / base if base > 0 else 0.0
        cells = " | ".join(f"{100 * r.wer[c]:.1f}%" for c in cols)
        lines.append(f"| {r.task} | {r.utterances} | {cells} | {100 * reduction:.0f}% |")
    means = " | ".join(f"{100 * sum(r.wer[c] for r in results) / len(results):.1f}%" for c in cols)
    lines.append(f"| **mean** | | {means} | |")
    params = " | ".join(str(results[0].params[c]) for c in cols)
    lines.append(f"| params per task | | {params} | |")
    return "\n".join(lines)


def format_vocabulary_table(results: list[TaskResult]) -> str:
    """The same tasks and variants, decoding restricted to each task's vocabulary."""
    rows = [r for r in results if r.wer_vocabulary]
    if not rows:
        return ""
    cols = list(VARIANTS)
    lines = [
        "| task (vocabulary) | n | " + " | ".join(f"WER {c}" for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = " | ".join(f"{100 * r.wer_vocabulary[c]:.1f}%" for c in cols)
        lines.append(f"| {r.task} | {r.utterances} | {cells} |")
    means = " | ".join(
        f"{100 * sum(r.wer_vocabulary[c] for r in rows) / len(rows):.1f}%" for c in cols
    )
    lines.append(f"| **mean** | | {means} |")
    return "\n".join(lines)
