"""`hra` command line: data, training, evaluation, transcription.

hra serve              the HTTP server (HRA_HOST, HRA_PORT; settings: docs/configuration.md)
hra data               generate the synthetic corpora
hra build-default      the whole recipe behind models/default (one command)
hra build-whisper      the recipe behind models/whisper-tiny-en (controller + heads on Whisper)
hra train-head         a head for a new task from a manifest, registered in a store
hra seed-store         copy the model directory's shipped heads into the configured store
hra evaluate           the WER table (prints Markdown, writes JSON)
hra split-check        FSDD: is a speaker's test split shifted from their training takes?
hra transcribe         files -> text with a task's head (any model kind, as served)
hra adapt-backbone     a pretrained CTC checkpoint -> a model dir: controller + first heads
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from server.allocator import reexec_with_allocator
from server.config import Settings, get_settings
from server.models.registry import HRA_CTC, WHISPER, ModelKind, load_recognizer, model_kind_of

logger = logging.getLogger("server.cli")


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="hra", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=settings.model_dir)
    parser.add_argument("--work-dir", type=Path, default=settings.work_dir)
    parser.add_argument("--fsdd-root", type=Path, default=settings.fsdd_root)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the HTTP server on HRA_HOST:HRA_PORT")

    p = sub.add_parser("data", help="generate synthetic train/test corpora")
    p.add_argument("--scale", type=float, default=1.0)

    p = sub.add_parser("build-default", help="train everything behind the model dir")
    p.add_argument("--quick", action="store_true", help="tiny data and steps (smoke test)")

    p = sub.add_parser(
        "build-whisper", help="train the Whisper model dir's controller and heads (frozen Whisper)"
    )
    p.add_argument("--quick", action="store_true", help="tiny data and steps (smoke test)")
    p.add_argument(
        "--slice", action="store_true", help="2 domains + 2 speakers, fewer steps (as committed)"
    )

    p = sub.add_parser("train-head", help="train a head for a new task, controller frozen")
    _task_option(p, required=True, help="the task id the head is registered under")
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
    _store_option(p)
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

    p = sub.add_parser("evaluate", help="WER per task and variant")
    p.add_argument("--json", type=Path, default=Path("results/evaluation.json"))
    p.add_argument(
        "--data-dir",
        type=Path,
        help="synthetic test sets (default <work-dir>/default/data; made if absent)",
    )

    p = sub.add_parser(
        "split-check", help="FSDD: a fresh head per speaker, held-out takes vs the test split"
    )
    p.add_argument("--speakers", nargs="+", default=["george", "theo", "yweweler"])
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's stage d)")
    p.add_argument("--json", type=Path, default=Path("results/split-check.json"))

    sub.add_parser(
        "seed-store",
        help="copy the model dir's shipped heads into the configured store (HRA_STORE): "
        "tasks already holding the same head are skipped",
    )

    p = sub.add_parser("transcribe", help="transcribe audio files")
    _task_option(p, default="base", help="task id; 'base' = backbone only")
    _store_option(p)
    p.add_argument("files", nargs="+", type=Path)

    _adapt_parser(sub)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if "--task-id" in (sys.argv[1:] if argv is None else argv):
        logger.warning("--task-id is deprecated: use --task (same meaning)")
    if args.command == "serve" and argv is None:  # a real process, not a call from Python
        reexec_with_allocator(settings.allocator, sys.argv[1:])
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return COMMANDS[args.command](args)


def _task_option(p: argparse.ArgumentParser, **kwargs) -> None:
    """`--task` everywhere (as the API's `task_id`); `--task-id` is its deprecated alias."""
    p.add_argument("--task", "--task-id", dest="task", metavar="TASK", **kwargs)


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        type=Path,
        help="DiskStore folder (default: the server's, HRA_DISK_STORE_PATH or "
        "<HRA_STATE_DIR>/<model dir name>/heads, seeded from <model-dir>/heads on first use)",
    )


def _disk_store_path(args) -> Path:
    """--store, else the folder `hra serve` uses for this model dir (seeded on first use)."""
    from adapters_store.seeding import seed_state_dir

    if args.store:
        return args.store
    settings = get_settings().model_copy(update={"model_dir": args.model_dir})
    seed_state_dir(settings)
    return settings.heads_path


def uvicorn_options(settings: Settings) -> dict:
    """uvicorn's connection bounds from HttpSettings (the body-read timeout is middleware,
    server/api/limits.py, so it holds under any ASGI server)."""
    return dict(
        host=settings.host,
        port=settings.port,
        limit_concurrency=settings.http.max_connections,
        timeout_keep_alive=settings.http.keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.http.max_header_bytes,
        # a WebSocket message is read whole before /v1/realtime sees it: twice the streaming
        # limit (between the two, an error event; past it, uvicorn closes with 1009)
        ws_max_size=2 * settings.streaming.max_message_bytes,
    )


def _serve(args) -> int:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "server.api.app:create_app",
        factory=True,
        log_level="info",
        **uvicorn_options(settings),
    )
    return 0


def _data(args) -> int:
    from server.data.synthetic import generate_all

    generate_all(args.work_dir / "data", scale=args.scale)
    return 0


def _build_default(args) -> int:
    from server.training.recipes import Recipe, build_default

    recipe = Recipe.quick() if args.quick else Recipe()
    work = args.work_dir / ("quick" if args.quick else "default")
    _log_built(args, build_default(args.model_dir, work, args.fsdd_root, recipe))
    return 0


def _log_built(args, summary: dict) -> None:
    logger.info(
        "built %s in %.1f min, fingerprint %s",
        args.model_dir,
        summary["build_minutes"],
        summary["fingerprint"],
    )


def _train_head(args) -> int:
    from adapters_store.disk_store import DiskStore
    from adapters_store.errors import UnknownTask
    from server.data.manifest import read_manifest

    train = _kind_command(TRAIN_HEAD, args.model_dir, "train-head")
    rows = read_manifest(args.manifest, task=args.task)
    store_path = _disk_store_path(args)
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


def _build_whisper(args) -> int:
    from server.training.whisper.recipe import WhisperRecipe, build_whisper

    recipe = WhisperRecipe.quick() if args.quick else WhisperRecipe()
    recipe = WhisperRecipe.slice() if args.slice else recipe
    name = "whisper-quick" if args.quick else "whisper-slice" if args.slice else "whisper-tiny-en"
    work = args.work_dir / name
    cache_dir = get_settings().whisper.cache_dir or args.work_dir / "whisper"
    _log_built(args, build_whisper(args.model_dir, work, args.fsdd_root, recipe, cache_dir))
    return 0


def _seed_store(args) -> int:
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


def _evaluate(args) -> int:
    return _kind_command(EVALUATE, args.model_dir, "evaluate")(args)


def _evaluate_ctc(args) -> int:
    from server.training.evaluate import evaluate, format_table, format_vocabulary_table

    data_dir = args.data_dir or args.work_dir / "default" / "data"
    results = evaluate(args.model_dir, data_dir, args.fsdd_root)
    print(format_table(results))
    print()
    print(format_vocabulary_table(results))
    return _write_json(args.json, results)


def _evaluate_whisper(args) -> int:
    from server.training.whisper.evaluate import evaluate, format_table

    data_dir = args.data_dir or args.work_dir / "whisper-tiny-en" / "sentences"
    results = evaluate(args.model_dir, data_dir, args.fsdd_root, get_settings())
    print(format_table(results))
    json_path = args.json
    if json_path == Path("results/evaluation.json"):  # the CTC table's default
        json_path = Path("results/evaluation-whisper.json")
    return _write_json(json_path, results)


def _split_check(args) -> int:
    from server.training.split_check import format_split_table, split_check

    results = split_check(args.model_dir, args.fsdd_root, args.speakers, args.steps)
    print(format_split_table(results))
    return _write_json(args.json, results)


def _write_json(path: Path, results: list) -> int:
    """A list of dataclasses, the record beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    logger.info("wrote %s", path)
    return 0


def _transcribe(args) -> int:
    """Each file through the model as `hra serve` loads and runs it (any model kind)."""
    from adapters_store.disk_store import DiskStore
    from adapters_store.head_format import validate_head
    from adapters_store.slot_pool import DeviceSlotPool
    from server.audio.reading import read_audio_file
    from server.models.checkpoint import head_spec
    from server.serving.engine import Engine, EngineInput

    settings = get_settings().model_copy(update={"model_dir": args.model_dir})
    device = torch.device("cpu")
    recognizer, fp = load_recognizer(settings, device)
    spec = head_spec(recognizer.model, fp, settings.heads.max_ranks)
    head = None
    if args.task != "base":
        head = DiskStore(_disk_store_path(args)).get(args.task)
        validate_head(head, spec)
    items = [EngineInput(read_audio_file(f, settings.audio), head) for f in args.files]
    engine = Engine(recognizer, DeviceSlotPool(spec, 1, device))
    try:
        outcomes = engine.run(items).wait()
    finally:
        engine.close()
    failed = 0
    for path, outcome in zip(args.files, outcomes):
        if isinstance(outcome, Exception):
            failed += 1
            print(f"{path}: {outcome}", file=sys.stderr)
        else:
            print(f"{path}\t{outcome.text}")
    return 1 if failed else 0


def _adapt_parser(sub) -> None:
    p = sub.add_parser(
        "adapt-backbone",
        help="a pretrained CTC checkpoint -> a served model dir (controller + a linear head "
        "per manifest task, backbone frozen)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a Hugging Face CTC folder (config.json, weights, vocab.json), a NeMo character "
        "Conformer/FastConformer-CTC .nemo file, or an HRA model.safetensors",
    )
    p.add_argument(
        "--manifests",
        type=Path,
        nargs="+",
        required=True,
        help="JSON lines of {audio, text, task}; a row without task takes the file's stem",
    )
    p.add_argument("--out", type=Path, required=True, help="the model directory to write")
    p.add_argument("--controller-dim", type=int, help="default: D/4 in [16, 128]")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-seconds", type=float, default=16.0)
    p.add_argument("--speeds", type=float, nargs="+", default=[1.0])
    p.add_argument("--owner", help="tenant that owns the first heads (default: none)")


def _adapt_backbone(args) -> int:
    from server.training.adapt import AdaptConfig, adapt_backbone

    config = AdaptConfig(
        controller_dim=args.controller_dim,
        steps=args.steps,
        lr=args.lr,
        batch_seconds=args.batch_seconds,
        speeds=tuple(args.speeds),
    )
    work = args.work_dir / "adapt" / args.out.resolve().name
    summary = adapt_backbone(args.checkpoint, args.manifests, args.out, config, work, args.owner)
    print(
        f"wrote {args.out}: fingerprint {summary['fingerprint']}, controller_dim "
        f"{summary['controller_dim']}, heads {', '.join(summary['tasks'])}; CTC loss "
        f"{summary['loss_before']:.2f} -> {summary['loss_after']:.2f} per utterance; "
        f"{summary['seconds_per_step']:.3f} s/step"
    )
    return 0


def _kind_command(table: dict[ModelKind, Callable], model_dir: Path, command: str) -> Callable:
    """The command's function for the model dir's kind, or exit saying it has none."""
    kind = model_kind_of(model_dir)
    if kind not in table:
        kinds = " and ".join(k.name for k in table)
        raise SystemExit(
            f"{command} supports {kinds} model directories; {model_dir} is {kind.name}"
        )
    return table[kind]


# what train-head and evaluate run per model kind (server/models/registry.py)
TRAIN_HEAD = {HRA_CTC: _train_ctc_head, WHISPER: _train_whisper_head}
EVALUATE = {HRA_CTC: _evaluate_ctc, WHISPER: _evaluate_whisper}

COMMANDS = {
    "serve": _serve,
    "data": _data,
    "build-default": _build_default,
    "build-whisper": _build_whisper,
    "train-head": _train_head,
    "seed-store": _seed_store,
    "evaluate": _evaluate,
    "split-check": _split_check,
    "transcribe": _transcribe,
    "adapt-backbone": _adapt_backbone,
}

if __name__ == "__main__":
    sys.exit(main())
