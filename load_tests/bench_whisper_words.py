"""What word times cost on Whisper: the JFK clip (11 s) decoded with and without them.

    python -m load_tests.bench_whisper_words [--repeats 3] [--batch 1]

For each installed Whisper model directory (tiny.en; base when its extra is installed),
times `transcribe` (encoder + greedy decode, timestamps on, as the server runs it) with
words off and on, interleaved, and reports medians; the difference is the alignment
(one decoder pass over the text + DTW), also timed alone around
decoding.align_words (less noisy on a shared machine). Single thread. Writes
load_tests/results/whisper-words.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from server.audio.reading import read_audio
from server.config import REPO_ROOT, Settings
from server.models.whisper import decoding
from server.models.whisper.decoding import transcribe
from server.models.whisper.model import load_whisper
from server.models.whisper.weights import WeightsManifest

logger = logging.getLogger(__name__)
JFK = REPO_ROOT / "tests" / "data" / "jfk.flac"
RESULTS = REPO_ROOT / "load_tests" / "results" / "whisper-words.json"
MODEL_DIRS = [REPO_ROOT / "models" / "whisper-tiny-en", REPO_ROOT / "models" / "whisper-base"]


def installed(model_dir: Path) -> bool:
    manifest = WeightsManifest.load(model_dir)
    return all(importlib.util.find_spec(module) for _, _, module in manifest.packages)


def _timed_alignment(spent: list[float]):
    """decoding.align_words, each call's seconds appended to `spent`."""
    inner = decoding.align_words

    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    return timed


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = read_audio(JFK.read_bytes(), Settings().audio).at_model_rate()
    clips = [clip] * args.batch
    rows = []
    spent: list[float] = []
    decoding.align_words = _timed_alignment(spent)
    for model_dir in MODEL_DIRS:
        if not installed(model_dir):
            logger.info("%s: weights not installed, skipped", model_dir.name)
            continue
        model = load_whisper(model_dir)
        transcribe(model, clips[:1], timestamps=True)  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        spent.clear()
        for r in range(args.repeats):
            for words in (False, True):
                began = time.perf_counter()
                out = transcribe(model, clips, timestamps=True, words=[words] * len(clips))
                times[words].append(time.perf_counter() - began)
                assert bool(out[0].words) == words
            logger.info("%s: repeat %d/%d done", model_dir.name, r + 1, args.repeats)
        plain, timed = statistics.median(times[False]), statistics.median(times[True])
        rows.append(
            {
                "model": model_dir.name,
                "batch": args.batch,
                "repeats": args.repeats,
                "median_s_without_words": round(plain, 3),
                "median_s_with_words": round(timed, 3),
                "overhead_s": round(timed - plain, 3),
                "overhead_ratio": round(timed / plain, 3),
                "median_s_alignment_alone": round(statistics.median(spent), 3),
            }
        )
    print(f"{'model':<18} {'B':>2} {'no words s':>10} {'words s':>8} {'ratio':>6} {'align s':>8}")
    for row in rows:
        print(
            f"{row['model']:<18} {row['batch']:>2} {row['median_s_without_words']:>10.3f} "
            f"{row['median_s_with_words']:>8.3f} {row['overhead_ratio']:>5.2f}x "
            f"{row['median_s_alignment_alone']:>8.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"clip": "tests/data/jfk.flac", "rows": rows}, indent=2) + "\n")
    logger.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
