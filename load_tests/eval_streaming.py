"""WER of live streaming vs offline decoding of the same audio, per task.

For every shipped task, test utterances (FSDD takes 30-39 of the task's speaker; the
synthetic domain's test split for synth-*) are joined into streams of `--per-stream`
utterances with `--gap-s` of faint noise between them. Each stream goes through
/v1/realtime (VAD endpointing, partials, finals; sent as fast as the server takes it:
finals do not depend on the pace; no commit: the VAD ends every utterance, the last in
the closing room tone) and the same audio through POST /v1/transcribe
(offline, one pass over the whole stream); the isolated utterances are decoded offline
too. WER against the reference for each, and the last partial before each final.

    PYTHONPATH=. nice -n 10 .venv/bin/python load_tests/eval_streaming.py
Writes load_tests/results/streaming-wer.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import jiwer
import numpy as np
import soundfile as sf
import torch

from load_tests.server_process import start_server
from load_tests.stream_client import PCM_RATE, stream
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.data.manifest import load_audio
from server.data.synthetic import split_size, synthesize

RESULTS = REPO_ROOT / "load_tests" / "results" / "streaming-wer.json"


def test_utterances(task: str, limit: int) -> list[tuple[np.ndarray, str]]:
    if task.startswith("fsdd-"):
        items = load_fsdd(get_settings().fsdd_root, TEST_TAKES, [task[5:]])[:limit]
        return [(load_audio(u.audio).numpy(), u.text) for u in items]
    domain = task[6:]
    count = min(limit, split_size(domain, "test"))
    return [
        (wav.numpy(), text) for wav, text in (synthesize(domain, "test", i) for i in range(count))
    ]


FRAME = 320  # 20 ms, the VAD's frame


def room_tone(clip: np.ndarray, seconds: float, g: np.random.Generator) -> np.ndarray:
    """`seconds` of the clip's own background: its quietest 20 ms frames in random order
    (a pause in live speech is the same microphone's room tone, not digital silence)."""
    frames = clip[: clip.size // FRAME * FRAME].reshape(-1, FRAME)
    quiet = frames[np.argsort(np.sqrt(np.mean(frames**2, axis=1)))[: max(1, len(frames) // 10)]]
    picks = g.integers(0, len(quiet), int(seconds * PCM_RATE) // FRAME + 1)
    return quiet[picks].reshape(-1)[: int(seconds * PCM_RATE)].astype(np.float32)


def join(parts: list[np.ndarray], gap_s: float, seed: int) -> np.ndarray:
    """The clips with `gap_s` of one room tone (the first clip's) before, between, after."""
    g = np.random.default_rng(seed)
    out = [room_tone(parts[0], gap_s, g)]
    for p in parts:
        out += [p.astype(np.float32), room_tone(parts[0], gap_s, g)]
    return np.concatenate(out)


def wav_bytes(wav: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, PCM_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def offline(client: httpx.AsyncClient, task: str, wav: np.ndarray) -> str:
    r = await client.post(
        f"/v1/transcribe?task_id={task}",
        content=wav_bytes(wav),
        headers={"content-type": "audio/wav"},
    )
    r.raise_for_status()
    return r.json()["text"]


def wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer(refs, [h if h.strip() else "<empty>" for h in hyps])


async def evaluate(url: str, tasks: list[str], args) -> list[dict]:
    rows = []
    ws_url = url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for task in tasks:
            began = time.monotonic()
            utts = test_utterances(task, args.limit)
            groups = [utts[i : i + args.per_stream] for i in range(0, len(utts), args.per_stream)]
            streams = [join([w for w, _ in g], args.gap_s, i) for i, g in enumerate(groups)]
            refs = [" ".join(t for _, t in g) for g in groups]
            runs = await asyncio.gather(
                *(stream(ws_url, task, s, realtime=False, tail_s=10, commit=False) for s in streams)
            )
            same_audio = [await offline(client, task, s) for s in streams]
            isolated = [await offline(client, task, w) for w, _ in utts]
            row = {
                "task": task,
                "utterances": len(utts),
                "streams": len(streams),
                "audio_s": round(sum(s.size for s in streams) / PCM_RATE, 1),
                "wer_streaming": wer(refs, [r.transcript for r in runs]),
                "wer_offline_same_audio": wer(refs, same_audio),
                "wer_offline_isolated": wer([t for _, t in utts], isolated),
                "finals": sum(len(r.finals) for r in runs),
                "errors": sum(len(r.errors) for r in runs),
            }
            rows.append(row)
            print(f"{task}: {row} ({time.monotonic() - began:.0f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="test utterances per task")
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--gap-s", type=float, default=0.7)
    parser.add_argument("--tasks", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shipped = sorted(p.name for p in (REPO_ROOT / "models" / "default" / "heads").iterdir())
    tasks = args.tasks or shipped
    with tempfile.TemporaryDirectory() as tmp:
        heads = Path(tmp) / "heads"
        shutil.copytree(REPO_ROOT / "models" / "default" / "heads", heads)
        process, url = start_server(
            heads, HRA_STREAMING__MAX_AHEAD_S="600", HRA_STREAMING__MAX_PENDING_FINALS="64"
        )
        try:
            rows = asyncio.run(evaluate(url, tasks, args))
        finally:
            process.terminate()
            process.wait(30)
    print("\n| task | utterances | WER streaming | WER offline, same audio | isolated clips |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['task']} | {r['utterances']} | {100 * r['wer_streaming']:.1f}% "
            f"| {100 * r['wer_offline_same_audio']:.1f}% | {100 * r['wer_offline_isolated']:.1f}% |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
