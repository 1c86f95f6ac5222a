"""N concurrent live streams in real time over N tasks, plus file requests.

Each stream sends FSDD test digits (its speaker's, 0.7 s of room tone between them) as
100 ms PCM16 chunks at the audio's own pace to its own task (a registered copy of a
shipped head: N distinct tasks), through a real `hra serve` over real sockets; file
requests (POST /v1/transcribe of FSDD clips, random tasks) run alongside.
Reported per N: partial-result latency (event received - its last sample sent)
p50/p95/p99, final latency, streams behind real time (a chunk sent > 0.5 s late, or a
final > 2 s after its utterance's end), errors, fused batch composition from /metrics
(mean utterances and distinct tasks per forward pass), engine RTF (engine seconds per
stream audio second) and file-request latency.

    PYTHONPATH=. nice -n 10 .venv/bin/python load_tests/bench_streams.py --streams 16 32 64
Writes load_tests/results/streams.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from load_tests.server_process import start_server
from load_tests.stream_client import PCM_RATE, stream
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, fsdd_speakers, load_fsdd
from server.data.manifest import load_audio

RESULTS = REPO_ROOT / "load_tests" / "results" / "streams.json"
SHIPPED = REPO_ROOT / "models" / "default" / "heads"
METRICS = ("hra_batch_distinct_tasks", "hra_batch_size", "hra_compute_seconds")


def stream_audio(speaker: str, count: int, seed: int) -> np.ndarray:
    utts = load_fsdd(get_settings().fsdd_root, TEST_TAKES, [speaker])
    rng = random.Random(seed)
    clips = [load_audio(u.audio).numpy() for u in rng.sample(utts, count)]
    frames = clips[0][: clips[0].size // 320 * 320].reshape(-1, 320)
    quiet = frames[np.argsort((frames**2).mean(axis=1))[: max(1, len(frames) // 10)]]
    g = np.random.default_rng(seed)

    def tone() -> np.ndarray:
        return quiet[g.integers(0, len(quiet), 35)].reshape(-1)  # 0.7 s

    parts = [tone()]
    for clip in clips:
        parts += [clip, tone()]
    return np.concatenate(parts).astype(np.float32)


def scrape(text: str) -> dict[str, float]:
    values = {}
    for name in METRICS:
        for suffix in ("sum", "count"):
            m = re.search(rf"^{name}_{suffix} (\S+)$", text, re.M)
            values[f"{name}_{suffix}"] = float(m[1])
    for m in re.finditer(r'^hra_batch_distinct_tasks_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
        values[f"tasks_le_{m[1]}"] = float(m[2])
    return values


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


async def file_requests(url: str, tasks: list[str], clips: list[bytes], stop, out: list) -> None:
    rng = random.Random(0)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            began = time.monotonic()
            try:
                r = await client.post(
                    f"/v1/transcribe?task_id={rng.choice(tasks)}",
                    content=rng.choice(clips),
                    headers={"content-type": "audio/wav"},
                )
                out.append((r.status_code, time.monotonic() - began))
            except httpx.HTTPError as exc:
                out.append((type(exc).__name__, time.monotonic() - began))
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - began)))


async def run_level(url: str, n: int, args) -> dict:
    speakers = fsdd_speakers(get_settings().fsdd_root)
    shipped = sorted(p.name for p in SHIPPED.iterdir())
    tasks = [f"live-{i}" for i in range(n)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for i, task in enumerate(tasks):  # N distinct tasks (copies of the shipped heads)
            head = (SHIPPED / shipped[i % len(shipped)]).glob("v*.safetensors")
            files = {"file": ("h.safetensors", sorted(head)[-1].read_bytes())}
            r = await client.put(f"/v1/tasks/{task}", files=files)
            r.raise_for_status()
        audio = [stream_audio(speakers[i % len(speakers)], args.utterances, i) for i in range(n)]
        clips = []
        for u in load_fsdd(get_settings().fsdd_root, TEST_TAKES)[::50]:
            buf = io.BytesIO()
            sf.write(buf, load_audio(u.audio).numpy(), PCM_RATE, format="WAV")
            clips.append(buf.getvalue())
        before = scrape((await client.get("/metrics")).text)
        stop, files_out = asyncio.Event(), []
        filer = asyncio.create_task(file_requests(url, tasks, clips, stop, files_out))
        ws_url = url.replace("http://", "ws://")

        async def one(i: int):
            await asyncio.sleep(random.Random(i).uniform(0, 1.0))  # streams do not start in step
            return await stream(ws_url, tasks[i], audio[i], tail_s=5)

        began = time.monotonic()
        runs = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        wall = time.monotonic() - began
        stop.set()
        await filer
        after = scrape((await client.get("/metrics")).text)
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    ok = [r for r in runs if not isinstance(r, BaseException)]
    failed = [repr(r)[:120] for r in runs if isinstance(r, BaseException)]
    partial = [x for r in ok for x in r.partial_latency_s]
    final = [x for r in ok for x in r.final_latency_s]
    endpointed = [x for r in ok for x in r.endpoint_latency_s]
    behind = sum(
        1 for r in ok if r.send_lag_s > 0.5 or (r.final_latency_s and max(r.final_latency_s) > 2.0)
    )
    audio_s = sum(a.size for a in audio) / PCM_RATE
    batches = d["hra_batch_distinct_tasks_count"]
    buckets = {k[9:]: v for k, v in d.items() if k.startswith("tasks_le_")}
    file_lat = [t for s, t in files_out if s == 200]
    return {
        "streams": n,
        "tasks": n,
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 1),
        "partials": len(partial),
        "partial_p50_ms": _ms(pct(partial, 50)),
        "partial_p95_ms": _ms(pct(partial, 95)),
        "partial_p99_ms": _ms(pct(partial, 99)),
        "final_p50_ms": _ms(pct(final, 50)),
        "final_p95_ms": _ms(pct(final, 95)),
        "final_after_endpoint_p50_ms": _ms(pct(endpointed, 50)),
        "final_after_endpoint_p95_ms": _ms(pct(endpointed, 95)),
        "finals": len(final),
        "behind": behind + len(failed),
        "max_send_lag_ms": _ms(max((r.send_lag_s for r in ok), default=0.0)),
        "stream_errors": sum(len(r.errors) for r in ok) + len(failed),
        "error_codes": sorted({c for r in ok for c in r.errors}) + failed[:3],
        "batches": int(batches),
        "mean_batch_size": round(d["hra_batch_size_sum"] / batches, 2) if batches else None,
        "mean_tasks_per_batch": round(d["hra_batch_distinct_tasks_sum"] / batches, 2)
        if batches
        else None,
        "tasks_per_batch_le": buckets,
        "engine_rtf": round(d["hra_compute_seconds_sum"] / audio_s, 4),
        "engine_busy": round(d["hra_compute_seconds_sum"] / wall, 3),
        "file_requests": len(files_out),
        "file_errors": sum(1 for s, _ in files_out if s != 200),
        "file_p50_ms": _ms(pct(file_lat, 50)),
        "file_p95_ms": _ms(pct(file_lat, 95)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--utterances", type=int, default=10, help="digits per stream")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        heads = Path(tmp) / "heads"
        shutil.copytree(SHIPPED, heads)
        process, url = start_server(heads, HRA_STREAMING__MAX_STREAMS="1024")
        try:
            for n in args.streams:
                row = asyncio.run(run_level(url, n, args))
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    cols = [
        ("streams", "streams"),
        ("partial_p50_ms", "partial p50 ms"),
        ("partial_p95_ms", "partial p95 ms"),
        ("final_p50_ms", "final p50 ms"),
        ("final_p95_ms", "final p95 ms"),
        ("final_after_endpoint_p50_ms", "final-endpoint p50 ms"),
        ("behind", "behind"),
        ("stream_errors", "errors"),
        ("mean_batch_size", "batch size"),
        ("mean_tasks_per_batch", "tasks/batch"),
        ("engine_rtf", "engine RTF"),
        ("engine_busy", "engine busy"),
        ("file_p50_ms", "file p50 ms"),
        ("file_errors", "file errors"),
    ]
    print("\n| " + " | ".join(h for _, h in cols) + " |")
    print("|" + "---:|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k, _ in cols) + " |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
