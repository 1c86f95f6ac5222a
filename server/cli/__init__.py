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
import logging
import sys
from pathlib import Path

import torch

from server.allocator import reexec_with_allocator
from server.cli import build, evaluation, heads, serve, transcribe
from server.cli.serve import uvicorn_options  # noqa: F401  (hra serve's bounds, for tests)
from server.config import get_settings

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

    for command in (serve, build, heads, evaluation, transcribe):
        command.register(sub)

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
    return args.run(args)
