"""Is an FSDD speaker's test split shifted from their training takes?

A head that scores well on its speaker's held-out training takes but badly on
the test takes points at the recordings, not the head. This trains a fresh
linear head per speaker on takes 0-24 only (backbone and controller frozen,
the recipe's stage (d) settings) and reports WER on takes 25-29 (unseen, same
recording sessions) beside takes 30-39 (the test split), greedy and within
the digit vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from adapters_store.head_format import HeadRecord, HeadType
from server.data.fsdd import DIGIT_WORDS, TEST_TAKES, load_fsdd
from server.models.checkpoint import load_model
from server.training.data import FeatureSet
from server.training.evaluate import wers
from server.training.recipes import Recipe, train_heads

logger = logging.getLogger(__name__)

FIT_TAKES = range(0, 25)
HELD_OUT_TAKES = range(25, 30)


@dataclass(frozen=True)
class SplitCheck:
    speaker: str
    wer_held_out: float  # takes 25-29, greedy
    wer_test: float  # takes 30-39, greedy
    wer_held_out_vocabulary: float
    wer_test_vocabulary: float


def split_check(
    model_dir: Path, fsdd_root: Path, speakers: list[str], steps: int | None = None
) -> list[SplitCheck]:
    """`steps` overrides the recipe's stage (d) steps (tests use a handful)."""
    model, fp = load_model(model_dir / "model.safetensors")
    recipe = Recipe()
    config = replace(recipe.refine, steps=steps or recipe.refine.steps)
    results = []
    for speaker in speakers:
        fit = load_fsdd(fsdd_root, FIT_TAKES, [speaker])
        data = FeatureSet.build(
            fit, model.backbone.featurize, speeds=recipe.speeds, tempos=recipe.refine_tempos
        )
        pools = train_heads(model, data, HeadType.LINEAR, 0, config)
        (head,) = pools.records(fp, 0)
        held_out = _wers(model, fsdd_root, speaker, HELD_OUT_TAKES, head)
        test = _wers(model, fsdd_root, speaker, TEST_TAKES, head)
        results.append(SplitCheck(speaker, held_out[0], test[0], held_out[1], test[1]))
        logger.info("%s", results[-1])
    return results


def _wers(model, root: Path, speaker: str, takes: range, head: HeadRecord) -> tuple[float, float]:
    rows = load_fsdd(root, takes, [speaker])
    data = FeatureSet.build(rows, model.backbone.featurize, desc=f"{speaker} {takes}")
    return wers(model, data.features, data.texts, head, DIGIT_WORDS)


def format_split_table(results: list[SplitCheck]) -> str:
    lines = [
        "| speaker | WER takes 25-29 | WER takes 30-39 | vocab. 25-29 | vocab. 30-39 |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        cells = (r.wer_held_out, r.wer_test, r.wer_held_out_vocabulary, r.wer_test_vocabulary)
        lines.append(f"| {r.speaker} | " + " | ".join(f"{100 * c:.0f}%" for c in cells) + " |")
    return "\n".join(lines)
