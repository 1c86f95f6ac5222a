"""`hra transcribe`: files -> text, through the model as `hra serve` loads and runs it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from server.cli.common import disk_store_path, store_option, task_option
from server.config import get_settings
from server.models.registry import load_recognizer


def register(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files")
    task_option(p, default="base", help="task id; 'base' = backbone only")
    store_option(p)
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(run=transcribe)


def transcribe(args) -> int:
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
        head = DiskStore(disk_store_path(args)).get(args.task)
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
