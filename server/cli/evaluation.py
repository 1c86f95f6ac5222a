"""`hra evaluate` (the WER tables) and `hra split-check` (is an FSDD speaker's test split
shifted from their training takes?)."""

from __future__ import annotations

from pathlib import Path

from server.cli.common import kind_command, write_json
from server.config import get_settings
from server.models.registry import HRA_CTC, WHISPER


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="WER per task and variant")
    p.add_argument("--json", type=Path, default=Path("results/evaluation.json"))
    p.add_argument(
        "--data-dir",
        type=Path,
        help="synthetic test sets (default <work-dir>/default/data; made if absent)",
    )

    p.set_defaults(run=evaluate)

    p = sub.add_parser(
        "split-check", help="FSDD: a fresh head per speaker, held-out takes vs the test split"
    )
    p.add_argument("--speakers", nargs="+", default=["george", "theo", "yweweler"])
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's stage d)")
    p.add_argument("--json", type=Path, default=Path("results/split-check.json"))
    p.set_defaults(run=split_check)


def evaluate(args) -> int:
    return kind_command(EVALUATE, args.model_dir, "evaluate")(args)


def _evaluate_ctc(args) -> int:
    from server.training.evaluate import evaluate, format_table, format_vocabulary_table

    data_dir = args.data_dir or args.work_dir / "default" / "data"
    results = evaluate(args.model_dir, data_dir, args.fsdd_root)
    print(format_table(results))
    print()
    print(format_vocabulary_table(results))
    return write_json(args.json, results)


def _evaluate_whisper(args) -> int:
    from server.training.whisper.evaluate import evaluate, format_table

    data_dir = args.data_dir or args.work_dir / "whisper-tiny-en" / "sentences"
    results = evaluate(args.model_dir, data_dir, args.fsdd_root, get_settings())
    print(format_table(results))
    json_path = args.json
    if json_path == Path("results/evaluation.json"):  # the CTC table's default
        json_path = Path("results/evaluation-whisper.json")
    return write_json(json_path, results)


def split_check(args) -> int:
    from server.training.split_check import format_split_table, split_check

    results = split_check(args.model_dir, args.fsdd_root, args.speakers, args.steps)
    print(format_split_table(results))
    return write_json(args.json, results)


# what evaluate runs per model kind (server/models/registry.py)
EVALUATE = {HRA_CTC: _evaluate_ctc, WHISPER: _evaluate_whisper}
