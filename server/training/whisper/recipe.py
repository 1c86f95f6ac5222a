"""The recipe behind models/whisper-tiny-en: controller + heads trained on frozen Whisper.

    data       synthetic English sentences in the 7 adaptation domains (server/data/
               sentences.py) + FSDD speakers (takes 0-29; 30-39 are the test split)
    stage (b)  the shared controller + one linear head per task, multi-task
    stage (c)  FFN heads per task against the frozen trained controller (baseline column)
    write      controller.safetensors, manifest.json (fingerprint, window), heads/ and
               baselines/ffn/ (public), build.json (the summary, s/step included)
The encoder runs in the `cut` window (clip + 8 s of silence): cheaper per step than the
30 s `pad` window (docs/models.md, Training HRA on Whisper), and the manifest makes it the window
this model directory serves with, so heads are served as they were trained.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adapters_store.disk_store import DiskStore
from adapters_store.families import head_shapes
from adapters_store.head_format import HeadRecord, HeadType
from server.data import sentences
from server.data.fsdd import TRAIN_TAKES, load_fsdd
from server.data.manifest import Utterance, read_manifest
from server.data.synthetic import ADAPTATION_DOMAINS
from server.models.adapters import Controller
from server.models.checkpoint import fingerprint
from server.models.hra import HRAModel
from server.models.registry import CONTROLLER_FILE
from server.models.whisper.model import WhisperModel, load_whisper
from server.training.recipes import HeadPools
from server.training.trainer import TrainConfig
from server.training.whisper.data import WhisperSet
from server.training.whisper.trainer import train

logger = logging.getLogger(__name__)

HEAD_FOLDERS = {HeadType.LINEAR: "heads", HeadType.FFN: "baselines/ffn"}


@dataclass(frozen=True)
class WhisperRecipe:
    """Every knob of `hra build-whisper`; `quick()` is the same recipe in miniature."""

    ffn_rank: int = 32
    rows: int = 8  # utterances per step (each costs its clip + the 8 s margin)
    window: str = "cut"
    cut_margin_s: float = 8.0
    domains: tuple[str, ...] = ADAPTATION_DOMAINS
    speakers: tuple[str, ...] | None = None  # None: every FSDD speaker
    sentence_sizes: dict[str, int] = field(default_factory=lambda: dict(sentences.SPLIT_SIZES))
    multitask: TrainConfig = TrainConfig(steps=500, lr=3e-3, warmup=20, checkpoint_every=50)
    heads: TrainConfig = TrainConfig(steps=300, lr=3e-3, warmup=20, checkpoint_every=50)

    @classmethod
    def slice(cls) -> WhisperRecipe:
        """The full recipe in miniature (`build-whisper --slice`): 2 domains + 2 speakers,
        4 rows a step, fewer steps (docs/models.md, Training HRA on Whisper)."""
        return cls(
            rows=4,
            domains=("telephone", "accent-de"),
            speakers=("george", "theo"),
            multitask=TrainConfig(steps=80, lr=5e-3, warmup=10, checkpoint_every=20),
            heads=TrainConfig(steps=40, lr=5e-3, warmup=10, checkpoint_every=20),
        )

    @classmethod
    def quick(cls) -> WhisperRecipe:
        small = TrainConfig(steps=2, lr=1e-3, warmup=1, checkpoint_every=1)
        return cls(
            rows=2,
            domains=("telephone",),
            speakers=("theo",),
            sentence_sizes={"train": 2, "test": 2},
            multitask=small,
            heads=small,
        )


def load_for_training(
    model_dir: Path, cache_dir: Path, window: str, cut_margin_s: float
) -> WhisperModel:
    whisper = load_whisper(model_dir, window, cache_dir)  # type: ignore[arg-type]
    whisper.encoder.cut_margin_frames = round(cut_margin_s / 0.01)
    return whisper


def seeded_controller(whisper: WhisperModel, manifest: dict) -> Controller:
    """The controller's starting point: torch's init under the manifest's controller_seed."""
    torch.manual_seed(int(manifest.get("controller_seed", 0)))
    return Controller(whisper.encoder.hidden_dim, int(manifest["controller_dim"]))


def train_pools(
    whisper: WhisperModel,
    hra: HRAModel,
    data: WhisperSet,
    head_type: HeadType,
    rank: int,
    config: TrainConfig,
    rows: int,
    train_controller: bool = False,
    checkpoint: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[HeadPools, dict]:
    """One head of `head_type` per task of `data`, trained together (batches mix tasks)."""
    enc = whisper.encoder
    shapes = head_shapes(head_type, enc.hidden_dim, hra.controller.dim, rank, enc.num_layers)
    pools = HeadPools(head_type, data.task_ids, shapes, seed=config.seed)
    params = {f"head.{k}": v for k, v in pools.pools.items()}
    if train_controller:
        params.update({f"controller.{k}": v for k, v in hra.controller.named_parameters()})
    summary = train(
        whisper,
        hra,
        params,
        data,
        lambda b: pools.head_batch(b.tasks),
        config,
        rows,
        checkpoint,
        desc=f"{head_type.value} heads" + (" + controller" if train_controller else ""),
        on_step=on_step,
    )
    return pools, summary


def training_utterances(data_dir: Path, fsdd_root: Path, recipe: WhisperRecipe) -> list[Utterance]:
    sentences.ensure_sentences(data_dir, recipe.domains, recipe.sentence_sizes)
    rows = []
    for domain in recipe.domains:
        rows += read_manifest(data_dir / domain / "train.jsonl")
    speakers = list(recipe.speakers) if recipe.speakers is not None else None
    return rows + load_fsdd(fsdd_root, TRAIN_TAKES, speakers)


def build_whisper(
    model_dir: Path, work_dir: Path, fsdd_root: Path, recipe: WhisperRecipe, cache_dir: Path
) -> dict:
    """Data -> (b) controller + linear heads -> (c) FFN heads -> the model directory."""
    began = time.time()
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    ckpt = work_dir / "checkpoints"
    whisper = load_for_training(model_dir, cache_dir, recipe.window, recipe.cut_margin_s)
    hra = HRAModel(whisper.encoder, int(manifest["controller_dim"]))
    hra.controller = seeded_controller(whisper, manifest)
    data = WhisperSet.build(
        training_utterances(work_dir / "sentences", fsdd_root, recipe), whisper, desc="train"
    )
    logger.info("training set: %d utterances, %d tasks", len(data), len(data.task_ids))
    summary: dict = {"recipe": asdict(recipe), "utterances": len(data), "stages": []}

    linear, stage = train_pools(
        whisper,
        hra,
        data,
        HeadType.LINEAR,
        0,
        recipe.multitask,
        recipe.rows,
        train_controller=True,
        checkpoint=ckpt / "multitask.safetensors",
    )
    summary["stages"].append(stage)
    fp = fingerprint(hra)
    ffn, stage = train_pools(
        whisper,
        hra,
        data,
        HeadType.FFN,
        recipe.ffn_rank,
        recipe.heads,
        recipe.rows,
        checkpoint=ckpt / f"ffn-{fp}.safetensors",
    )
    summary["stages"].append(stage)

    write_model_dir(model_dir, hra, fp, recipe, manifest)
    for pools, rank in ((linear, 0), (ffn, recipe.ffn_rank)):
        folder = model_dir / HEAD_FOLDERS[pools.head_type]
        shutil.rmtree(folder, ignore_errors=True)
        store = DiskStore(folder)
        for record in pools.records(fp, rank):
            store.put(record, visibility="public")
    summary["fingerprint"] = fp
    summary["build_minutes"] = round((time.time() - began) / 60, 1)
    (model_dir / "build.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def write_model_dir(
    model_dir: Path, hra: HRAModel, fp: str, recipe: WhisperRecipe, manifest: dict
) -> None:
    """controller.safetensors, then the manifest naming its fingerprint and window."""
    state = {k: v.detach().contiguous() for k, v in hra.controller.state_dict().items()}
    tmp = model_dir / (CONTROLLER_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"trained": "hra build-whisper"})
    tmp.replace(model_dir / CONTROLLER_FILE)
    manifest = dict(manifest)
    manifest.update(
        fingerprint=fp,
        window=recipe.window,
        cut_margin_s=recipe.cut_margin_s,
        controller="trained: hra build-whisper (build.json)",
    )
    tmp = model_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(model_dir / "manifest.json")


def load_trained(model_dir: Path, cache_dir: Path) -> tuple[WhisperModel, HRAModel, str]:
    """The model directory as it serves: its window, its controller, its fingerprint."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    whisper = load_for_training(
        model_dir,
        cache_dir,
        manifest.get("window", "pad"),
        float(manifest.get("cut_margin_s", 8.0)),
    )
    hra = HRAModel(whisper.encoder, int(manifest["controller_dim"]))
    hra.controller.load_state_dict(load_file(str(model_dir / CONTROLLER_FILE)))
    fp = fingerprint(hra)
    if manifest.get("fingerprint") and fp != manifest["fingerprint"]:
        raise ValueError(f"{model_dir}: fingerprint {fp} != manifest's {manifest['fingerprint']}")
    return whisper, hra, fp


def train_head(
    model_dir: Path,
    cache_dir: Path,
    rows: list[Utterance],
    head_type: HeadType,
    rank: int,
    config: TrainConfig,
    speeds: tuple[float, ...] = (1.0,),
    batch_rows: int = 8,
) -> HeadRecord:
    """`hra train-head` on a Whisper model directory: one head, controller frozen."""
    whisper, hra, fp = load_trained(model_dir, cache_dir)
    data = WhisperSet.build(rows, whisper, speeds=speeds)
    return train_one_head(whisper, hra, fp, data, head_type, rank, config, batch_rows)


def train_one_head(
    whisper: WhisperModel,
    hra: HRAModel,
    fp: str,
    data: WhisperSet,
    head_type: HeadType,
    rank: int,
    config: TrainConfig,
    batch_rows: int = 8,
    on_step: Callable[[int, float], None] | None = None,
) -> HeadRecord:
    """The head of `data`'s one task on a loaded model (train-head, fine-tuning jobs)."""
    if len(data.task_ids) != 1:
        raise ValueError(f"one task per head, got {len(data.task_ids)}")
    config = replace(config, checkpoint_every=max(1, config.steps))
    pools, _ = train_pools(whisper, hra, data, head_type, rank, config, batch_rows, on_step=on_step)
    (record,) = pools.records(fp, rank)
    return record
