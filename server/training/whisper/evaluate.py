"""The Whisper table: WER per task of Whisper zero-shot (`base`) vs HRA linear vs FFN heads.

Measured as served: the model directory is loaded by server.models.registry (its window,
its controller, its fingerprint check) and every clip goes through the
WhisperRecognizer's fused forward and decode (timestamps on, greedy), heads from the
model directory's stores. Test sets: each synthetic domain's held-out sentences and
FSDD takes 30-39. Both sides of WER are normalized (server/training/whisper/text.py).

Two zero-shot columns: `base` in the window the model dir serves (its manifest's, `cut`
for the trained tiny.en) and `base_pad`, plain Whisper in its native 30 s window, as
any Whisper user runs it. The heads' relative reduction is measured against the
better of the two per task (`best_zero_shot`): the zero-shot a tenant could otherwise
get, never the weaker one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import jiwer
import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord
from server.config import Settings
from server.data import sentences
from server.data.fsdd import FSDD_PREFIX, TEST_TAKES, load_fsdd
from server.data.manifest import Utterance, load_audio, read_manifest
from server.data.synthetic import ADAPTATION_DOMAINS
from server.models.registry import load_recognizer
from server.models.whisper.recognizer import WhisperRecognizer
from server.training.whisper.text import normalize

logger = logging.getLogger(__name__)

VARIANTS = {"base": None, "base_pad": None, "hra_linear": "heads", "hra_ffn": "baselines/ffn"}
NATIVE_WINDOW = {"base_pad": "pad"}  # variants run in another window than the served one
ZERO_SHOT = ("base", "base_pad")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class WhisperTaskResult:
    task: str
    utterances: int
    wer: dict[str, float]  # variant -> WER
    params: dict[str, int]  # variant -> per-task parameters
    examples: dict[str, list[str]]  # variant -> first transcripts (for reading the table)


def test_utterances(
    data_dir: Path, fsdd_root: Path, domains=ADAPTATION_DOMAINS, speakers=None, test_size=None
) -> list[Utterance]:
    size = test_size or sentences.SPLIT_SIZES["test"]
    sentences.ensure_sentences(data_dir, tuple(domains), {"test": size})
    rows = []
    for domain in domains:
        rows += read_manifest(data_dir / domain / "test.jsonl")
    return rows + load_fsdd(fsdd_root, TEST_TAKES, speakers)


def transcripts(
    recognizer: WhisperRecognizer,
    feats: list[torch.Tensor],
    head: HeadRecord | None,
    batch_size: int = 16,
) -> list[str]:
    """Clips in length order, `batch_size` per fused pass, as the engine runs them."""
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    texts = [""] * len(feats)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            entry = None if head is None else (head.meta.head_type, head.tensors)
            heads = HeadBatch.from_heads([entry] * len(rows))
            out = recognizer.forward([feats[i] for i in rows], heads, CPU)
            for j, i in enumerate(rows):
                texts[i] = recognizer.decode(out, j, head).text
    return texts


def in_window(
    recognizer: WhisperRecognizer, window: str | None, feats: list[torch.Tensor], head
) -> list[str]:
    """transcripts() with the encoder in `window` for this call (None: as served)."""
    served = recognizer.whisper.window
    recognizer.whisper.window = window or served
    try:
        return transcripts(recognizer, feats, head)
    finally:
        recognizer.whisper.window = served


def wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer([normalize(r) for r in refs], [normalize(h) or "<empty>" for h in hyps])


def evaluate(
    model_dir: Path,
    data_dir: Path,
    fsdd_root: Path,
    settings: Settings | None = None,
    domains=None,
    speakers=None,
    test_size: int | None = None,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> list[WhisperTaskResult]:
    """`variants` a subset: the table's other columns are left out (merge_results joins)."""
    settings = (settings or Settings()).model_copy(update={"model_dir": model_dir})
    recognizer, _ = load_recognizer(settings, CPU)
    assert isinstance(recognizer, WhisperRecognizer)
    stores = {v: DiskStore(model_dir / f) for v, f in VARIANTS.items() if f and v in variants}
    if domains is None or speakers is None:  # the tasks the model dir ships heads for
        shipped = DiskStore(model_dir / VARIANTS["hra_linear"]).task_ids()
        if domains is None:
            domains = [d for d in ADAPTATION_DOMAINS if f"synth-{d}" in shipped]
        if speakers is None:
            speakers = [t.removeprefix(FSDD_PREFIX) for t in shipped if t.startswith(FSDD_PREFIX)]
    utterances = test_utterances(data_dir, fsdd_root, domains, speakers, test_size)
    tasks = sorted({u.task for u in utterances})
    results = []
    for task in tqdm(tasks, desc="evaluate whisper"):
        rows = [u for u in utterances if u.task == task]
        feats = [recognizer.whisper.encoder.featurize(load_audio(u.audio)) for u in rows]
        refs = [u.text for u in rows]
        wers, params, examples = {}, {}, {}
        for variant in variants:
            head = stores[variant].get(task) if VARIANTS[variant] else None
            hyps = in_window(recognizer, NATIVE_WINDOW.get(variant), feats, head)
            wers[variant] = wer(refs, hyps)
            params[variant] = head.num_parameters if head else 0
            examples[variant] = hyps[:3]
        logger.info("%s: %s", task, {k: round(v, 3) for k, v in wers.items()})
        results.append(WhisperTaskResult(task, len(rows), wers, params, examples))
    return results


def merge_results(
    parts: list[list[WhisperTaskResult]],
) -> list[WhisperTaskResult]:
    """Column sets measured in separate runs (e.g. `base` while heads train) -> one table."""
    out: dict[str, WhisperTaskResult] = {}
    for part in parts:
        for r in part:
            if r.task not in out:
                out[r.task] = WhisperTaskResult(r.task, r.utterances, {}, {}, {})
            merged = out[r.task]
            assert merged.utterances == r.utterances, r.task
            merged.wer.update(r.wer)
            merged.params.update(r.params)
            merged.examples.update(r.examples)
    return [out[t] for t in sorted(out)]


def best_zero_shot(r: WhisperTaskResult) -> float:
    return min(r.wer[v] for v in ZERO_SHOT if v in r.wer)


def format_table(results: list[WhisperTaskResult]) -> str:
    """WER per task and variant, and each head's relative reduction against the better
    zero-shot window (the bar the heads are held to: at least 30% on every synthetic domain)."""
    cols = [c for c in VARIANTS if all(c in r.wer for r in results)]
    heads = [c for c in cols if c not in ZERO_SHOT]
    lines = [
        "| task | n | "
        + " | ".join(f"WER {c}" for c in cols)
        + "".join(f" | rel. cut {c}" for c in heads)
        + " |",
        "|---|---|" + "---|" * (len(cols) + len(heads)),
    ]
    for r in results:
        best = best_zero_shot(r)
        cuts = "".join(
            f" | {100 * (best - r.wer[c]) / best:.0f}%" if best > 0 else " | -" for c in heads
        )
        cells = " | ".join(f"{100 * r.wer[c]:.1f}%" for c in cols)
        lines.append(f"| {r.task} | {r.utterances} | {cells}{cuts} |")
    means = " | ".join(f"{100 * sum(r.wer[c] for r in results) / len(results):.1f}%" for c in cols)
    lines.append(f"| **mean** | | {means}" + " |" * len(heads) + " |")
    params = " | ".join(str(results[0].params[c]) for c in cols)
    lines.append(f"| params per task | | {params}" + " |" * len(heads) + " |")
    return "\n".join(lines)
