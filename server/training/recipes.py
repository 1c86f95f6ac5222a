"""The training stages and the one-command recipe that builds the embedded default.

    (a) pretrain     backbone on the synthetic base domain (CTC)
    (b) multitask    controller + one linear head per task, backbone frozen
    (c) heads        new heads (any type) against a frozen backbone + controller
    (d) refine       every head family's FSDD speaker heads, trained on on FSDD alone
Baseline: residual bottleneck adapters per task, backbone frozen, no controller.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from adapters_store.disk_store import DiskStore
from adapters_store.families import family, head_shapes
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadType
from server.data import synthetic
from server.data.fsdd import DIGIT_WORDS, FSDD_PREFIX, TRAIN_TAKES, load_fsdd
from server.data.manifest import Utterance, read_manifest
from server.models.checkpoint import fingerprint, save_model
from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hra import HRAModel
from server.training.data import Batch, FeatureSet
from server.training.trainer import TrainConfig, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Every knob of the default build; `quick()` is the same recipe in miniature."""

    controller_dim: int = 32
    ffn_rank: int = 32
    residual_rank: int = 12
    data_scale: float = 1.0
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)  # speed perturbation of every training set
    pretrain: TrainConfig = TrainConfig(
        steps=1600,
        lr=2e-3,
        warmup=200,
        max_frames=5000,
        weight_decay=1e-2,
        spec_augment=(12, 20),
    )
    multitask: TrainConfig = TrainConfig(
        steps=1000, lr=3e-3, warmup=50, max_frames=6000, spec_augment=(12, 20)
    )
    heads: TrainConfig = TrainConfig(
        steps=400, lr=3e-3, warmup=50, max_frames=6000, spec_augment=(12, 20)
    )
    # 0.35-0.57 s FSDD clips leave no room for time masks: no SpecAugment here.
    refine: TrainConfig = TrainConfig(steps=1000, lr=3e-3, warmup=20, max_frames=3000)
    # Stage (d) adds copies of the FSDD takes spoken faster, pitch kept: a speaker's
    # rate drifts between recording sessions (George's test takes are 16-28% shorter
    # than his training takes), and a one-word clip of 0.2 s leaves CTC few frames.
    refine_tempos: tuple[float, ...] = (1.2, 1.4)

    @classmethod
    def quick(cls) -> Recipe:
        small = TrainConfig(steps=4, lr=1e-3, warmup=1, max_frames=2000, checkpoint_every=2)
        return cls(
            data_scale=0.01,
            speeds=(1.0,),
            pretrain=small,
            multitask=small,
            heads=small,
            refine=small,
        )


class HeadPools(nn.Module):
    """Trainable heads of one type for many tasks at once: tensor name -> [S, ...].

    Training every task's head in one run is the same as training each alone
    (a head only gets gradients from its own task's utterances) at a fraction
    of the wall time, since batches mix tasks.
    """

    def __init__(self, head_type: HeadType, task_ids: list[str], shapes: dict, seed: int = 0):
        super().__init__()
        self.head_type = head_type
        self.task_ids = task_ids
        g = torch.Generator().manual_seed(seed)
        inits = [family(head_type).init_tensors(shapes, g) for _ in task_ids]
        self.pools = nn.ParameterDict(
            {name: nn.Parameter(torch.stack([i[name] for i in inits])) for name in shapes}
        )

    def head_batch(self, tasks: torch.Tensor) -> HeadBatch:
        """Utterance b uses pool slot tasks[b]: exactly the serving-time layout."""
        return HeadBatch.from_pools(self.head_type, dict(self.pools), tasks)

    def subset(self, task_ids: list[str]) -> HeadPools:
        """A copy holding only `task_ids`' heads, in that order (train it, then `update`)."""
        part = HeadPools(self.head_type, task_ids, shapes={})  # no fresh init: copied below
        rows = torch.tensor([self.task_ids.index(t) for t in task_ids])
        part.pools = nn.ParameterDict(
            {k: nn.Parameter(v.detach()[rows].clone()) for k, v in self.pools.items()}
        )
        return part

    def update(self, part: HeadPools) -> None:
        with torch.no_grad():
            for i, task in enumerate(part.task_ids):
                for name, pool in self.pools.items():
                    pool[self.task_ids.index(task)].copy_(part.pools[name][i])

    def records(self, fp: str, rank: int) -> list[HeadRecord]:
        return [
            HeadRecord(
                HeadMetadata(task_id=t, head_type=self.head_type.value, fingerprint=fp, rank=rank),
                {name: pool[i].detach().clone() for name, pool in self.pools.items()},
            )
            for i, t in enumerate(self.task_ids)
        ]


def pretrain_backbone(data: FeatureSet, config: TrainConfig, checkpoint: Path | None) -> HRAModel:
    torch.manual_seed(config.seed)
    model = HRAModel(ConformerCTC(ConformerConfig()), controller_dim=1)  # controller unused here
    params = dict(model.backbone.named_parameters())
    train(
        model,
        params,
        data,
        lambda b: None,
        config,
        checkpoint,
        backbone_trains=True,
        desc="pretrain",
    )
    return model


def train_heads(
    model: HRAModel,
    data: FeatureSet,
    head_type: HeadType,
    rank: int,
    config: TrainConfig,
    checkpoint: Path | None = None,
    train_controller: bool = False,
    until: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> HeadPools:
    """Stage (b) with train_controller=True, stage (c) and the residual baseline otherwise."""
    shapes = head_shapes(
        head_type, model.backbone.hidden_dim, model.controller.dim, rank, model.backbone.num_layers
    )
    pools = HeadPools(head_type, data.task_ids, shapes, seed=config.seed)
    params = {f"head.{k}": v for k, v in pools.pools.items()}
    if train_controller:
        params.update({f"controller.{k}": v for k, v in model.controller.named_parameters()})

    def heads_for(batch: Batch) -> HeadBatch:
        return pools.head_batch(batch.tasks)

    train(
        model,
        params,
        data,
        heads_for,
        config,
        checkpoint,
        desc=f"{head_type.value} heads",
        until=until,
        on_step=on_step,
    )
    return pools


def refine_heads(
    model: HRAModel,
    pools: HeadPools,
    data: FeatureSet,
    config: TrainConfig,
    checkpoint: Path | None = None,
) -> None:
    """Stage (d): train on the heads of `data`'s tasks with only their own data, in place.

    FSDD clips are 0.35-0.57 s, a sliver of the frames in the mixed batches of
    stages (b) and (c), and their heads ended under-fit: 7-14% WER on their own
    training takes. Every head family gets the same refinement, so the
    linear / FFN / residual comparison stays fair.
    """
    part = pools.subset(data.task_ids)
    params = {f"head.{k}": v for k, v in part.pools.items()}
    train(
        model,
        params,
        data,
        lambda b: part.head_batch(b.tasks),
        config,
        checkpoint,
        desc=f"refine {pools.head_type.value}",
    )
    pools.update(part)


def adaptation_utterances(data_dir: Path, fsdd_root: Path, split: str) -> list[Utterance]:
    """All adaptation tasks' utterances: synthetic domains + FSDD speakers."""
    rows = []
    for domain in synthetic.ADAPTATION_DOMAINS:
        rows += read_manifest(data_dir / domain / f"{split}.jsonl")
    if split == "train":
        rows += load_fsdd(fsdd_root, TRAIN_TAKES)
    return rows


def ensure_data(data_dir: Path, scale: float) -> None:
    missing = [
        d
        for d in synthetic.DOMAINS
        if not all((data_dir / d / f"{s}.jsonl").exists() for s in ("train", "test"))
    ]
    if missing:
        synthetic.generate_all(data_dir, tuple(missing), scale=scale)


def build_default(out_dir: Path, work_dir: Path, fsdd_root: Path, recipe: Recipe) -> dict:
    """Data -> (a) -> (b) -> default store -> (c) FFN heads -> residual baseline."""
    began = time.time()
    data_dir = work_dir / "data"
    ckpt = work_dir / "checkpoints"
    ensure_data(data_dir, recipe.data_scale)
    summary: dict = {"recipe": asdict(recipe)}

    base = FeatureSet.build(
        read_manifest(data_dir / "base" / "train.jsonl"),
        _featurizer(),
        desc="base",
        speeds=recipe.speeds,
    )
    model = pretrain_backbone(base, recipe.pretrain, ckpt / "pretrain.safetensors")
    del base

    model.controller = type(model.controller)(model.backbone.hidden_dim, recipe.controller_dim)
    torch.manual_seed(recipe.multitask.seed)
    adapt = FeatureSet.build(
        adaptation_utterances(data_dir, fsdd_root, "train"),
        model.backbone.featurize,
        desc="adapt",
        speeds=recipe.speeds,
    )
    linear = train_heads(
        model,
        adapt,
        HeadType.LINEAR,
        0,
        recipe.multitask,
        ckpt / "multitask.safetensors",
        train_controller=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fp = save_model(model, out_dir / "model.safetensors")
    summary["fingerprint"] = fp

    stores = {
        "heads": (HeadType.LINEAR, 0, linear),
        "baselines/ffn": (HeadType.FFN, recipe.ffn_rank, None),
        "baselines/residual": (HeadType.RESIDUAL, recipe.residual_rank, None),
    }
    fsdd = FeatureSet.build(
        load_fsdd(fsdd_root, TRAIN_TAKES),
        model.backbone.featurize,
        desc="fsdd",
        speeds=recipe.speeds,
        tempos=recipe.refine_tempos,
    )
    for folder, (head_type, rank, pools) in stores.items():
        if pools is None:
            pools = train_heads(
                model, adapt, head_type, rank, recipe.heads, ckpt / f"{head_type.value}.safetensors"
            )
        refine_heads(
            model, pools, fsdd, recipe.refine, ckpt / f"refine-{head_type.value}.safetensors"
        )
        shutil.rmtree(out_dir / folder, ignore_errors=True)
        store = DiskStore(out_dir / folder)
        for record in pools.records(fp, rank):
            store.put(with_task_vocabulary(record))
    summary["build_minutes"] = round((time.time() - began) / 60, 1)
    (out_dir / "build.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def with_task_vocabulary(record: HeadRecord) -> HeadRecord:
    """FSDD speakers only ever say digits: their heads carry the ten words as vocabulary.

    Serving then restricts their transcripts to digit words; evaluation reports
    WER both ways (server/training/evaluate.py).
    """
    if record.meta.task_id.startswith(FSDD_PREFIX):
        return record.with_meta(vocabulary=DIGIT_WORDS)
    return record


def _featurizer():
    return ConformerCTC(ConformerConfig()).featurize


__all__ = [
    "Recipe",
    "build_default",
    "train_heads",
    "refine_heads",
    "pretrain_backbone",
    "fingerprint",
]
