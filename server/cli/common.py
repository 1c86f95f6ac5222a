"""What several `hra` commands share: the task and store options, the model kind's
command, and writing a results file beside the printed table."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from server.config import get_settings
from server.models.registry import ModelKind, model_kind_of

logger = logging.getLogger(__name__)


def task_option(p: argparse.ArgumentParser, **kwargs) -> None:
    """`--task` everywhere (as the API's `task_id`); `--task-id` is its deprecated alias."""
    p.add_argument("--task", "--task-id", dest="task", metavar="TASK", **kwargs)


def store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        type=Path,
        help="DiskStore folder (default: the server's, HRA_DISK_STORE_PATH or "
        "<HRA_STATE_DIR>/<model dir name>/heads, seeded from <model-dir>/heads on first use)",
    )


def disk_store_path(args) -> Path:
    """--store, else the folder `hra serve` uses for this model dir (seeded on first use)."""
    from adapters_store.seeding import seed_state_dir

    if args.store:
        return args.store
    settings = get_settings().model_copy(update={"model_dir": args.model_dir})
    seed_state_dir(settings)
    return settings.heads_path


def kind_command(table: dict[ModelKind, Callable], model_dir: Path, command: str) -> Callable:
    """The command's function for the model dir's kind, or exit saying it has none."""
    kind = model_kind_of(model_dir)
    if kind not in table:
        kinds = " and ".join(k.name for k in table)
        raise SystemExit(
            f"{command} supports {kinds} model directories; {model_dir} is {kind.name}"
        )
    return table[kind]


def write_json(path: Path, results: list) -> int:
    """A list of dataclasses, the record beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    logger.info("wrote %s", path)
    return 0


def log_built(args, summary: dict) -> None:
    logger.info(
        "built %s in %.1f min, fingerprint %s",
        args.model_dir,
        summary["build_minutes"],
        summary["fingerprint"],
    )
