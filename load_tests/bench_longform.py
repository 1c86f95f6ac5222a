"""Long-form: a 30-minute file's time and real-time factor, and what it does to another
tenant's short requests.

A real `hra serve` process with two tenants. The long file is one FSDD speaker's takes
with 0.3-1.2 s pauses (FLAC, 8 kHz), transcribed with that speaker's head. Phases:
    idle      tenant B sends short FSDD clips one after another: latency p50/p95
    alone     tenant A's long file on an idle server: seconds, RTF, and its words against
              the takes transcribed alone (one request each)
    during    the long file again, while tenant B sends the same short clips: their
              p50/p95, and the long file's own time
Prints a table, writes load_tests/results/longform.json.

    nice -n 10 .venv/bin/python -m load_tests.bench_longform            # ~3 min (30 min file)
    nice -n 10 .venv/bin/python -m load_tests.bench_longform --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from load_tests.long_audio import RATE, long_fsdd, wav
from load_tests.report import write_report
from load_tests.server_process import start_server
from server.config import REPO_ROOT, get_settings

KEYS = [{"key": "bench-a-key", "tenant": "a"}, {"key": "bench-b-key", "tenant": "b"}]
A, B = ({"Authorization": f"Bearer {k['key']}"} for k in KEYS)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def short_requests(client, clips, stop: asyncio.Event | None, n: int) -> list[float]:
    """Tenant B's clips one after another: n of them, or until `stop` is set."""
    latencies = []
    i = 0
    while (stop is None and i < n) or (stop is not None and not stop.is_set()):
        clip, task = clips[i % len(clips)]
        began = time.perf_counter()
        r = await client.post(
            f"/v1/transcribe?task_id={task}",
            content=clip,
            headers={"content-type": "audio/wav", **B},
        )
        r.raise_for_status()
        latencies.append(time.perf_counter() - began)
        i += 1
        await asyncio.sleep(0.05)  # a client's think time between requests
    return latencies


async def long_request(client, audio: bytes, task: str) -> tuple[float, dict]:
    began = time.perf_counter()
    r = await client.post(
        "/v1/audio/transcriptions",
        files={"file": ("long.flac", audio)},
        data={"model": task, "response_format": "verbose_json"},
        headers=A,
    )
    r.raise_for_status()
    return time.perf_counter() - began, r.json()


async def bench(url: str, audio: bytes, seconds: float, pieces, speaker: str, shorts: int):
    fsdd = get_settings().fsdd_root
    others = sorted(p for p in fsdd.glob("*.wav") if f"_{speaker}_" not in p.name)[::97][:20]
    clips = [(p.read_bytes(), f"fsdd-{p.name.split('_')[1]}") for p in others]
    task = f"fsdd-{speaker}"
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        await short_requests(client, clips, None, 5)  # warm
        idle = await short_requests(client, clips, None, shorts)
        alone_s, body = await long_request(client, audio, task)
        sem = asyncio.Semaphore(4)

        async def solo(path: Path) -> str:
            async with sem:
                r = await client.post(
                    f"/v1/transcribe?task_id={task}",
                    content=path.read_bytes(),
                    headers={"content-type": "audio/wav", **A},
                )
                return r.json()["text"]

        solo_words = " ".join(await asyncio.gather(*(solo(p.path) for p in pieces))).split()
        long_words = body["text"].split()
        same = difflib.SequenceMatcher(a=solo_words, b=long_words, autojunk=False)
        stop = asyncio.Event()

        async def long_then_stop():
            try:
                return await long_request(client, audio, task)
            finally:
                stop.set()

        (during_s, _), during = await asyncio.gather(
            long_then_stop(), short_requests(client, clips, stop, 0)
        )
    return {
        "audio_minutes": round(seconds / 60, 2),
        "takes": len(pieces),
        "long_alone_s": round(alone_s, 2),
        "long_alone_rtf": round(alone_s / seconds, 4),
        "words_long": len(long_words),
        "words_takes_alone": len(solo_words),
        "words_identical": long_words == solo_words,
        "words_match_ratio": round(same.ratio(), 4),
        "segments": len(body["segments"]),
        "short_idle_n": len(idle),
        "short_idle_p50_ms": round(1000 * statistics.median(idle), 1),
        "short_idle_p95_ms": round(1000 * pct(idle, 95), 1),
        "short_during_n": len(during),
        "short_during_p50_ms": round(1000 * statistics.median(during), 1),
        "short_during_p95_ms": round(1000 * pct(during, 95), 1),
        "p95_during_over_idle": round(pct(during, 95) / pct(idle, 95), 2),
        "long_during_s": round(during_s, 2),
        "long_during_rtf": round(during_s / seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speaker", default="jackson")
    parser.add_argument("--shorts", type=int, default=60, help="idle short requests")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "load_tests/results/longform.json")
    args = parser.parse_args()
    samples, pieces = long_fsdd(
        get_settings().fsdd_root, args.minutes * 60, 11, speaker=args.speaker
    )
    audio = wav(samples, fmt="FLAC")
    seconds = samples.shape[0] / RATE
    print(f"long file: {seconds / 60:.1f} min, {len(pieces)} takes, {len(audio) / 1e6:.1f} MB FLAC")
    with tempfile.TemporaryDirectory() as tmp:
        heads = Path(tmp) / "heads"
        shutil.copytree(REPO_ROOT / "models/default/heads", heads)
        process, url = start_server(heads, HRA_OPEN_ACCESS="false", HRA_API_KEYS=json.dumps(KEYS))
        try:
            result = asyncio.run(bench(url, audio, seconds, pieces, args.speaker, args.shorts))
        finally:
            process.terminate()
            process.wait(30)
    write_report(result, args.out)


if __name__ == "__main__":
    main()
