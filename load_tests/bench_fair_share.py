"""Every attack class beside a victim tenant: the victim's latency against idle, and the
attacker's share of the engine.

A real `hra serve` process with API keys for two tenants. The victim sends short FSDD
clips one after another (a new one 0.2 s after each answer) and one live stream of real
speech in real time; each phase runs the victim for `--seconds`, first alone (idle),
then beside one attack class:

    live_in_speech   8 live streams of speech with no pause, ever (held "in speech")
    long_noise       4 long files at once, again and again: noise with periodic clicks
    whisper_cost     (Whisper server) sub-second clips that make the decoder loop, with
                     the longest prompt allowed, 4 at once, again and again
    dataset_and_job  a dataset upload being parsed and a fine-tuning job training

Reported per phase: the victim's file p50/p95, its live final latency p95, failed victim
requests, and the attacker's share of engine time (hra_tenant_engine_seconds_total).
Goals: victim p95 within max(2 x idle p95, idle p95 + 250 ms); no victim request fails.

    .venv/bin/python -m load_tests.bench_fair_share [--seconds 20] [--no-whisper | --whisper-only]
Writes load_tests/results/fair-share.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from load_tests.report import write_table
from load_tests.server_process import start_server
from load_tests.stream_client import stream
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, TRAIN_TAKES, load_fsdd
from server.data.manifest import load_audio

RATE = 16_000
KEYS = {"victim": "victim-key", "attacker": "attacker-key"}
METRICS_KEY = "metrics-key"
VICTIM_TASK = "fsdd-jackson"


def _wav(x: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, x.astype(np.float32), rate, format=fmt)
    return out.getvalue()


def _auth(who: str) -> dict:
    return {"authorization": f"Bearer {KEYS[who]}"}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


class Speech:
    """Real recordings: the victim's clips and continuous speech for live streams."""

    def __init__(self) -> None:
        root = get_settings().fsdd_root
        test = load_fsdd(root, TEST_TAKES)
        self.victim_clips = [_wav(load_audio(u.audio).numpy()) for u in test[:40:2]]
        self.train = load_fsdd(root, TRAIN_TAKES)
        waves = [load_audio(u.audio).numpy() for u in test[:60]]
        self.continuous = np.concatenate(waves)  # no pause: held in speech
        gap = np.zeros(int(0.8 * RATE), np.float32)
        self.victim_live = np.concatenate([x for w in waves[:12] for x in (w, gap)])

    def dataset(self, items: int = 60) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            rows = []
            for u in self.train[:items]:
                name = f"audio/{Path(u.audio).name}"
                z.writestr(name, Path(u.audio).read_bytes())
                rows.append({"audio": name, "text": u.text})
            z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
        return buffer.getvalue()


def noise_with_clicks(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, int(seconds * RATE)).astype(np.float32)
    x[:: RATE // 4] = 0.9  # a click every 250 ms
    return _wav(x, fmt="FLAC")


def looping_clip(seed: int) -> bytes:
    """0.8 s of a buzzing tone: Whisper tends to repeat itself on it."""
    t = np.arange(int(0.8 * RATE)) / RATE
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sign(np.sin(2 * np.pi * 180 * t)) + rng.normal(0, 0.01, t.size)
    return _wav(x)


async def victim_files(url: str, clips: list[bytes], task: str, stop, out: list) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        i = 0
        while not stop.is_set():
            began = time.monotonic()
            try:
                r = await client.post(
                    "/v1/audio/transcriptions",
                    headers=_auth("victim"),
                    files={"file": ("a.wav", clips[i % len(clips)], "audio/wav")},
                    data={"model": task},
                )
                out.append((r.status_code, time.monotonic() - began))
            except httpx.HTTPError as exc:
                out.append((type(exc).__name__, time.monotonic() - began))
            i += 1
            await asyncio.sleep(0.2)


async def victim_live(url: str, wav: np.ndarray, task: str, stop) -> list[float]:
    ws = url.replace("http://", "ws://")
    finals: list[float] = []
    while not stop.is_set():
        run = await stream(ws, task, wav, headers=_auth("victim"), tail_s=5)
        finals += run.final_latency_s
    return finals


async def engine_seconds(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})).text
    out = {}
    for line in text.splitlines():
        if line.startswith("hra_tenant_engine_seconds_total{"):
            tenant = line.split('tenant="', 1)[1].split('"', 1)[0]
            out[tenant] = float(line.rsplit(" ", 1)[1])
    return out


# --- attacks: each runs until `stop` is set ---


async def live_in_speech(url: str, speech: Speech, stop) -> None:
    ws = url.replace("http://", "ws://")

    async def one(i: int) -> None:
        wav = np.roll(speech.continuous, i * RATE)
        while not stop.is_set():
            try:
                await stream(ws, "base", wav, headers=_auth("attacker"), tail_s=0)
            except Exception:  # refused or closed: open another
                await asyncio.sleep(0.5)

    await asyncio.gather(*(one(i) for i in range(8)))


async def _attacker_posts(url: str, stop, audio: bytes, form: dict) -> None:
    """One attacker client: the same transcription request again and again."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        while not stop.is_set():
            try:
                await client.post(
                    "/v1/audio/transcriptions",
                    headers=_auth("attacker"),
                    files={"file": ("a", audio, "application/octet-stream")},
                    data=form,
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.5)


async def long_noise(url: str, speech: Speech, stop) -> None:
    files = [noise_with_clicks(600, seed) for seed in range(4)]
    await asyncio.gather(*(_attacker_posts(url, stop, f, {"model": "base"}) for f in files))


async def whisper_cost(url: str, speech: Speech, stop) -> None:
    prompt = ("the quick brown fox jumps over the lazy dog " * 200)[:4000]
    form = {"model": "base", "prompt": prompt, "temperature": "0"}
    clips = [looping_clip(seed) for seed in range(4)]
    await asyncio.gather(*(_attacker_posts(url, stop, c, form) for c in clips))


async def dataset_and_job(url: str, speech: Speech, stop) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        while not stop.is_set():
            made = await client.post(
                "/v1/files",
                headers=_auth("attacker"),
                files={"file": ("d.zip", speech.dataset(), "application/zip")},
                data={"purpose": "fine-tune"},
            )
            if made.status_code != 200:
                await asyncio.sleep(1)
                continue
            body = {"model": "attacker-task", "training_file": made.json()["id"]}
            body["hyperparameters"] = {"steps": 200}
            await client.post("/v1/fine_tuning/jobs", headers=_auth("attacker"), json=body)
            await asyncio.sleep(2)


ATTACKS = {
    "live_in_speech": live_in_speech,
    "long_noise": long_noise,
    "dataset_and_job": dataset_and_job,
}


async def phase(url: str, speech: Speech, attack, seconds: float, task: str, live: bool) -> dict:
    stop = asyncio.Event()
    files: list = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = await engine_seconds(client)
        began = time.monotonic()
        jobs = [asyncio.create_task(victim_files(url, speech.victim_clips, task, stop, files))]
        if live:
            jobs.append(asyncio.create_task(victim_live(url, speech.victim_live, task, stop)))
        hostile = asyncio.create_task(attack(url, speech, stop)) if attack else None
        await asyncio.sleep(seconds)
        stop.set()
        finals = []
        for job in jobs:
            got = await job
            if isinstance(got, list):
                finals = got
        if hostile:
            hostile.cancel()
            try:
                await hostile
            except (asyncio.CancelledError, Exception):
                pass
        after = await engine_seconds(client)
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    total = sum(used.values())
    ok = [t for s, t in files if s == 200]
    return {
        "victim_requests": len(files),
        "victim_failed": sum(1 for s, _ in files if s != 200),
        "victim_p50_ms": _ms(_pct(ok, 50)),
        "victim_p95_ms": _ms(_pct(ok, 95)),
        "victim_live_final_p95_ms": _ms(_pct(finals, 95)),
        "attacker_engine_share": round(used.get("attacker", 0.0) / total, 3) if total else None,
        "wall_s": round(time.monotonic() - began, 1),
    }


def judge(row: dict, idle: dict) -> dict:
    bound = max(2 * idle["victim_p95_ms"], idle["victim_p95_ms"] + 250)
    row["p95_bound_ms"] = round(bound, 1)
    row["meets_goal"] = row["victim_failed"] == 0 and (row["victim_p95_ms"] or 1e9) <= bound
    return row


def server_env(state: Path) -> dict:
    keys = [{"key": KEYS[t], "tenant": t} for t in KEYS]
    return {
        "HRA_OPEN_ACCESS": "false",
        "HRA_API_KEYS": json.dumps(keys),
        "HRA_HTTP__METRICS_KEY": METRICS_KEY,
        "HRA_STATE_DIR": str(state),
    }


async def run_server(model_dir: Path, attacks: dict, speech: Speech, args, live: bool) -> list:
    work = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    heads = work / "heads"
    shutil.copytree(model_dir / "heads", heads)
    process, url = start_server(heads, HRA_MODEL_DIR=str(model_dir), **server_env(work))
    rows = []
    try:
        task = VICTIM_TASK if (heads / VICTIM_TASK).exists() else "base"
        await phase(url, speech, None, 3, task, False)  # warm the server and the head
        idle = await phase(url, speech, None, args.seconds, task, live)
        rows.append({"model": model_dir.name, "attack": "idle", **idle})
        for name, attack in attacks.items():
            row = await phase(url, speech, attack, args.seconds, task, live)
            rows.append(judge({"model": model_dir.name, "attack": name, **row}, idle))
            print(rows[-1], flush=True)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-whisper", action="store_true")
    parser.add_argument("--whisper-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("load_tests/results/fair-share.json"))
    args = parser.parse_args()
    speech = Speech()
    rows = []
    if not args.whisper_only:
        rows += asyncio.run(run_server(REPO_ROOT / "models/default", ATTACKS, speech, args, True))
    if not args.no_whisper:
        whisper = {"whisper_cost": whisper_cost}
        rows += asyncio.run(
            run_server(REPO_ROOT / "models/whisper-tiny-en", whisper, speech, args, False)
        )
    write_table(rows, args.out)
    failing = [r["attack"] for r in rows if r.get("meets_goal") is False]
    print("goals met" if not failing else f"goals missed: {', '.join(failing)}")
    print(f"median victim p95 under attack: {statistics.median(r['victim_p95_ms'] for r in rows)}")


if __name__ == "__main__":
    main()
