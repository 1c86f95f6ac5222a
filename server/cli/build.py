"""`hra data`, `hra build-default`, `hra build-whisper`, `hra adapt-backbone`: the
recipes that make model directories."""

from __future__ import annotations

from pathlib import Path

from server.cli.common import log_built
from server.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("data", help="generate synthetic train/test corpora")
    p.add_argument("--scale", type=float, default=1.0)
    p.set_defaults(run=data)

    p = sub.add_parser("build-default", help="train everything behind the model dir")
    p.add_argument("--quick", action="store_true", help="tiny data and steps (smoke test)")
    p.set_defaults(run=build_default)

    p = sub.add_parser(
        "build-whisper", help="train the Whisper model dir's controller and heads (frozen Whisper)"
    )
    p.add_argument("--quick", action="store_true", help="tiny data and steps (smoke test)")
    p.add_argument(
        "--slice", action="store_true", help="2 domains + 2 speakers, fewer steps (a quick rebuild)"
    )
    p.set_defaults(run=build_whisper)

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
    p.set_defaults(run=adapt_backbone)


def data(args) -> int:
    from server.data.synthetic import generate_all

    generate_all(args.work_dir / "data", scale=args.scale)
    return 0


def build_default(args) -> int:
    from server.training.recipes import Recipe, build_default

    recipe = Recipe.quick() if args.quick else Recipe()
    work = args.work_dir / ("quick" if args.quick else "default")
    log_built(args, build_default(args.model_dir, work, args.fsdd_root, recipe))
    return 0


def build_whisper(args) -> int:
    from server.training.whisper.recipe import WhisperRecipe, build_whisper

    recipe = WhisperRecipe.quick() if args.quick else WhisperRecipe()
    recipe = WhisperRecipe.slice() if args.slice else recipe
    name = "whisper-quick" if args.quick else "whisper-slice" if args.slice else "whisper-tiny-en"
    work = args.work_dir / name
    cache_dir = get_settings().whisper.cache_dir or args.work_dir / "whisper"
    log_built(args, build_whisper(args.model_dir, work, args.fsdd_root, recipe, cache_dir))
    return 0


def adapt_backbone(args) -> int:
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
