"""`hra train-head` (a head for a new task, registered in a store) and `hra seed-store`
(the model directory's shipped heads into the configured store)."""

from __future__ import annotations

import logging
from pathlib import Path

from server.cli.common import disk_store_path, kind_command, store_option, task_option
from server.config import get_settings
from server.models.registry import HRA_CTC, WHISPER

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("train-head", help="train a head for a new task, controller frozen")
    task_option(p, required=True, help="the task id the head is registered under")
    p.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="JSON lines of {audio, text}; audio paths relative to the manifest",
    )
    p.add_argument("--head-type", choices=["linear", "ffn"], default="linear")
    p.add_argument("--rank", type=int, default=32, help="FFN hidden size")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--speeds",
        type=float,
        nargs="+",
        default=[1.0],
        help="train on speed-perturbed copies too (tempo and pitch), e.g. 0.9 1.0 1.1",
    )
    p.add_argument(
        "--tempos",
        type=float,
        nargs="*",
        default=[],
        help="and on copies at these tempos, pitch kept, e.g. 1.2 1.4 (fast talkers)",
    )
    store_option(p)
    p.add_argument(
        "--owner",
        help="tenant that owns the task (may use it with its key); default: the task's "
        "current owner when it exists, else none (only admin keys and open access use it)",
    )
    p.add_argument(
        "--vocabulary",
        help="the task's words, comma/space separated: transcripts then use only these",
    )
    p.add_argument(
        "--vocabulary-from-manifest",
        action="store_true",
        help="use every word of the manifest's transcripts as the task's vocabulary",
    )
    p.set_defaults(run=train_head)

    p = sub.add_parser(
        "seed-store",
        help="copy the model dir's shipped heads into the configured store (HRA_STORE): "
        "tasks already holding the same head are skipped",
    )
    p.set_defaults(run=seed_store)


def train_head(args) -> int:
    from adapters_store.disk_store import DiskStore
    from adapters_store.errors import UnknownTask
    from server.data.manifest import read_manifest

    train = kind_command(TRAIN_HEAD, args.model_dir, "train-head")
    rows = read_manifest(args.manifest, task=args.task)
    store_path = disk_store_path(args)
    store = DiskStore(store_path)
    owner = args.owner
    if owner is None:
        try:
            owner = store.owner(args.task)  # retraining keeps the task's owner
        except UnknownTask:
            logger.warning(
                "no --owner: %s has no owner, so only admin keys (or open access) may use it",
                args.task,
            )
    record = train(args, rows, owner)
    stored = store.put(record)
    print(
        f"wrote {args.task} version {stored.meta.version} ({stored.num_parameters} parameters, "
        f"owner {stored.meta.owner or 'none'}) to {store_path / args.task}"
    )
    return 0


def _train_ctc_head(args, rows, owner: str | None):
    """train-head on an HRA CTC model dir (model.safetensors): CTC loss, controller frozen."""
    from server.models.checkpoint import load_model
    from server.training.new_head import HeadRecipe, train_new_head

    vocabulary = args.vocabulary.replace(",", " ").split() if args.vocabulary else []
    model, fp = load_model(args.model_dir / "model.safetensors")
    recipe = HeadRecipe(
        head_type=args.head_type,
        rank=args.rank,
        steps=args.steps,
        lr=args.lr,
        speeds=tuple(args.speeds),
        tempos=tuple(args.tempos),
    )
    return train_new_head(
        model,
        fp,
        rows,
        args.task,
        recipe,
        owner=owner,
        vocabulary=vocabulary,
        vocabulary_from_data=args.vocabulary_from_manifest,
    )


def _train_whisper_head(args, rows, owner: str | None):
    """train-head on a Whisper model dir: teacher-forced, in the window the dir serves with."""
    from adapters_store.head_format import HeadType
    from server.training.trainer import TrainConfig
    from server.training.whisper.recipe import train_head

    if args.vocabulary or args.vocabulary_from_manifest or args.tempos:
        raise SystemExit("Whisper heads take no vocabulary and no --tempos (BPE decoding)")
    rows = [r.__class__(r.audio, r.text, args.task) for r in rows]
    head_type = HeadType(args.head_type)
    rank = args.rank if head_type == HeadType.FFN else 0
    config = TrainConfig(steps=args.steps, lr=args.lr, warmup=min(50, args.steps // 5 + 1))
    cache_dir = get_settings().whisper.cache_dir or args.work_dir / "whisper"
    record = train_head(
        args.model_dir, cache_dir, rows, head_type, rank, config, speeds=tuple(args.speeds)
    )
    return record.with_meta(owner=owner or None)


def seed_store(args) -> int:
    import asyncio

    from adapters_store.factory import make_store
    from adapters_store.seeding import seed_store

    settings = get_settings().model_copy(update={"model_dir": args.model_dir})

    async def run():
        store = make_store(settings)
        try:
            return await seed_store(store, settings.seed_heads_path)
        finally:
            await store.close()

    report = asyncio.run(run())
    print(
        f"{settings.store.value} store: {len(report.added)} added, {len(report.updated)} "
        f"updated, {len(report.skipped)} already there (from {settings.seed_heads_path})"
    )
    return 0


# what train-head runs per model kind (server/models/registry.py)
TRAIN_HEAD = {HRA_CTC: _train_ctc_head, WHISPER: _train_whisper_head}
