"""Long-form Whisper: a long English file's time, real-time factor and WER against its
pieces transcribed alone, and what a 2 h near-silent file costs.

A real `hra serve` process on a Whisper model directory (tiny.en by default). The long
file: the JFK clip and espeak-ng sentences (load_tests/long_audio.py) with 0.4-1.5 s
pauses, and in its middle a stretch of sentences abutted with no pause (cut by force).
Measured:
    long       the file through /v1/audio/transcriptions (verbose_json, word times):
               seconds, RTF, windows, words, segments, word times monotone
    pieces     each piece alone (one request each, one pass): WER of the long transcript
               against them, and both against what was spoken (lower-cased, punctuation
               dropped); the stretch with no pause is also scored on its own
    silence    2 h of near-silence (-90 dBFS noise, 8 kHz FLAC): seconds, text
Every setting of the server comes from the environment (HRA_LONGFORM__WHISPER_*, ...),
and HRA_TORCH_THREADS is 1 unless set. Prints a table, writes JSON.

    nice -n 5 .venv/bin/python -m load_tests.bench_whisper_longform              # ~6 min file
    nice -n 5 .venv/bin/python -m load_tests.bench_whisper_longform --minutes 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import jiwer
import numpy as np
import torch

from load_tests.long_audio import (
    SPEECH_RATE,
    SpeechPiece,
    edit_runs,
    long_speech,
    unbroken_speech,
    wav,
    words_of,
)
from load_tests.report import write_report
from load_tests.server_process import start_server
from server.config import REPO_ROOT, LongformSettings
from server.longform.policy import window_plan


def build_file(minutes: float, unbroken_s: float) -> tuple[np.ndarray, list[SpeechPiece], tuple]:
    """Pieces with pauses, a stretch with none in the middle, pieces again."""
    per_piece = 5.5  # seconds, pause included, on average
    count = max(2, int((minutes * 60 - unbroken_s) / per_piece / 2))
    a, pa = long_speech(count, seed=21)
    b, pb = unbroken_speech(unbroken_s, first=5)
    c, pc = long_speech(count, seed=22)
    pause = np.zeros(SPEECH_RATE, np.float32)
    parts, pieces, n = [], [], 0
    for x, ps in ((a, pa), (b, pb), (c, pc)):
        pieces += [SpeechPiece(p.samples, p.text, p.start + n, p.end + n) for p in ps]
        parts += [x, pause]
        n += x.shape[0] + pause.shape[0]
    stretch = (len(pa), len(pa) + len(pb))
    return np.concatenate(parts), pieces, stretch


def wer(ref: list[str], hyp: list[str]) -> float:
    return round(jiwer.wer(" ".join(ref), " ".join(hyp)), 4)


async def bench(url: str, samples: np.ndarray, pieces: list[SpeechPiece], stretch) -> dict:
    seconds = samples.shape[0] / SPEECH_RATE
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:

        async def ask(audio: bytes, rate_fmt: str = "WAV", **form) -> dict:
            r = await client.post(
                "/v1/audio/transcriptions",
                files={"file": (f"a.{rate_fmt.lower()}", audio)},
                data={"model": "base", **form},
            )
            r.raise_for_status()
            return r.json()

        await ask(wav(pieces[0].samples, SPEECH_RATE))  # warm
        began = time.perf_counter()
        body = await ask(
            wav(samples, SPEECH_RATE, fmt="FLAC"),
            "FLAC",
            response_format="verbose_json",
            **{"timestamp_granularities[]": "word"},
        )
        long_s = time.perf_counter() - began
        alone = []
        began = time.perf_counter()
        for p in pieces:  # one after another: what one pass per piece costs
            alone.append((await ask(wav(p.samples, SPEECH_RATE)))["text"])
        alone_s = time.perf_counter() - began
        rng = np.random.default_rng(0)
        quiet = (rng.standard_normal(8_000 * 7200) * 10 ** (-90 / 20)).astype(np.float32)
        quiet_audio = wav(quiet, 8_000, fmt="FLAC")
        began = time.perf_counter()
        silent = await ask(quiet_audio, "FLAC")
        silent_s = time.perf_counter() - began

    long_words = words_of(body["text"])
    alone_words = [w for t in alone for w in words_of(t)]
    truth = [w for p in pieces for w in words_of(p.text)]
    # the stretch with no pause: the long transcript's words whose centre lies in it
    lo, hi = pieces[stretch[0]].start / SPEECH_RATE, pieces[stretch[1] - 1].end / SPEECH_RATE
    in_stretch = [w for w in body["words"] if lo <= (w["start"] + w["end"]) / 2 < hi]
    stretch_long = [x for w in in_stretch for x in words_of(w["word"])]
    stretch_alone = [w for t in alone[stretch[0] : stretch[1]] for w in words_of(t)]
    windows = window_plan(LongformSettings(**_longform_env()), 30.0).plan(
        torch.from_numpy(samples), SPEECH_RATE
    )
    forced = sum(1 for w in windows if w.start < w.core_start)
    starts = [w["start"] for w in body["words"]]
    lost, added, edits = edit_runs(alone_words, long_words)
    return {
        "model_dir": os.environ.get("HRA_MODEL_DIR", ""),
        "longform_settings": _longform_env(),
        "audio_s": round(seconds, 1),
        "pieces": len(pieces),
        "windows": len(windows),
        "forced_cuts": forced,
        "long_s": round(long_s, 2),
        "long_rtf": round(long_s / seconds, 4),
        "pieces_alone_s": round(alone_s, 2),
        "pieces_alone_rtf": round(alone_s / seconds, 4),
        "words_long": len(long_words),
        "words_pieces_alone": len(alone_words),
        "words_spoken": len(truth),
        "wer_long_vs_pieces_alone": wer(alone_words, long_words),
        "wer_pieces_alone_vs_spoken": wer(truth, alone_words),
        "wer_long_vs_spoken": wer(truth, long_words),
        "longest_run_lost_vs_alone": lost,
        "longest_run_added_vs_alone": added,
        "unbroken_stretch_s": round(hi - lo, 1),
        "wer_unbroken_long_vs_alone": wer(stretch_alone, stretch_long),
        "segments": len(body["segments"]),
        "word_times_monotone": all(b >= a for a, b in zip(starts, starts[1:])),
        "word_times_within_file": all(0 <= w["end"] <= seconds + 1e-3 for w in body["words"]),
        "silent_2h_s": round(silent_s, 2),
        "silent_2h_text": silent["text"],
        "edits_vs_alone": edits,
    }


def _longform_env() -> dict:
    prefix = "HRA_LONGFORM__"
    return {k[len(prefix) :].lower(): v for k, v in os.environ.items() if k.startswith(prefix)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--unbroken-s", type=float, default=60.0)
    parser.add_argument("--model-dir", default="models/whisper-tiny-en")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests/results/whisper-longform.json"
    )
    args = parser.parse_args()
    samples, pieces, stretch = build_file(args.minutes, args.unbroken_s)
    print(f"long file: {samples.shape[0] / SPEECH_RATE / 60:.1f} min, {len(pieces)} pieces")
    os.environ["HRA_MODEL_DIR"] = args.model_dir
    os.environ.setdefault("HRA_TORCH_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        heads = Path(tmp) / "heads"
        heads.mkdir()
        process, url = start_server(heads, HRA_STATE_DIR=str(Path(tmp) / "state"))
        try:
            result = asyncio.run(bench(url, samples, pieces, stretch))
        finally:
            process.terminate()
            process.wait(30)
            shutil.rmtree(heads, ignore_errors=True)
    write_report(result, args.out)


if __name__ == "__main__":
    main()
