"""A head for one new task from (audio, text) pairs, backbone and controller frozen.

The one path behind `hra train-head` and the API's fine-tuning jobs: features (with
optional speed/tempo copies), the linear or FFN head trained alone, the task's
vocabulary from the transcripts when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters_store.head_format import HeadRecord, HeadType, validate_vocabulary
from server.data.manifest import Utterance
from server.models.hra import HRAModel
from server.training.data import FeatureSet
from server.training.recipes import train_heads
from server.training.trainer import TrainConfig


@dataclass(frozen=True)
class HeadRecipe:
    head_type: str = "linear"
    rank: int = 32  # FFN hidden size
    steps: int = 300
    lr: float = 3e-3
    speeds: tuple[float, ...] = (1.0,)
    tempos: tuple[float, ...] = ()
    max_frames: int = 5000


def train_new_head(
    model: HRAModel,
    fingerprint: str,
    utterances: list[Utterance],
    task: str,
    recipe: HeadRecipe,
    owner: str | None = None,
    vocabulary: list[str] | None = None,
    vocabulary_from_data: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    on_features: Callable[[FeatureSet], None] | None = None,
    between: Callable[[], None] | None = None,
) -> HeadRecord:
    """The trained head as a record (version 0: the store numbers it). `between` runs
    before every utterance's features (it may raise to stop a job); `on_step` after every
    training step."""
    rows = [Utterance(u.audio, u.text, task) for u in utterances]
    data = FeatureSet.build(
        rows, model.backbone.featurize, speeds=recipe.speeds, tempos=recipe.tempos, between=between
    )
    if on_features is not None:
        on_features(data)
    head_type = HeadType(recipe.head_type)
    rank = recipe.rank if head_type == HeadType.FFN else 0
    config = TrainConfig(
        steps=recipe.steps,
        lr=recipe.lr,
        warmup=min(50, recipe.steps // 5 + 1),
        max_frames=recipe.max_frames,
    )
    pools = train_heads(model, data, head_type, rank, config, on_step=on_step)
    (record,) = pools.records(fingerprint, rank)
    words = list(vocabulary or [])
    if vocabulary_from_data:
        words = sorted({w for text in data.texts for w in text.split()})
    return record.with_meta(owner=owner or None, vocabulary=validate_vocabulary(words))
