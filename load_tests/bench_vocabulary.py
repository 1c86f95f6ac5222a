"""What vocabulary-restricted decoding costs, by vocabulary size and utterance length.

The Viterbi word loop runs on the engine thread after the forward pass, for
the utterances of tasks that have a vocabulary; its cost grows with
(vocabulary characters x frames). Real model log-probabilities of FSDD speech
(joined to the target length), random lower-case words as vocabularies.

    .venv/bin/python -m load_tests.bench_vocabulary         # ~1 min
Writes load_tests/results/vocabulary.json.
"""

from __future__ import annotations

import argparse
import statistics
import string
import time
from pathlib import Path

import numpy as np
import torch

from load_tests.bench_fused import make_clips
from load_tests.report import write_table
from server.config import REPO_ROOT, get_settings
from server.models.checkpoint import load_model
from server.models.ctc.vocabulary import vocabulary_decode, word_loop


def random_words(count: int, seed: int = 0) -> tuple[str, ...]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(letters, size=rng.integers(3, 10))))
    return tuple(sorted(words))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--lengths", nargs="+", default=["fsdd", "3s", "10s"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests/results/vocabulary.json"
    )
    args = parser.parse_args()

    model, _ = load_model(get_settings().model_dir / "model.safetensors")
    rows = []
    for length in args.lengths:
        (clip,) = make_clips(length, 1)
        feats = model.backbone.featurize(clip)
        with torch.inference_mode():
            logits, _ = model(feats[None], torch.tensor([feats.shape[0]]))
        log_probs = logits[0].log_softmax(-1).numpy()
        for size in args.sizes:
            loop = word_loop(random_words(size))
            times = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                vocabulary_decode(log_probs, loop, 0.04)
                times.append(time.perf_counter() - began)
            rows.append(
                {
                    "length": length,
                    "frames": log_probs.shape[0],
                    "vocabulary_words": size,
                    "states": len(loop.labels),
                    "median_ms": round(1000 * statistics.median(times), 2),
                }
            )
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
