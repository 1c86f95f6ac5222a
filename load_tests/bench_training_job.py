"""A fine-tuning job on 250 utterances, and serving latency while it trains vs idle.

A real `hra serve` (keyless, disk store, local job queue, training torch threads = 1)
gets one FSDD speaker's takes 0-24 (250 utterances) as the training file and its takes
30-39 (100) as the validation file, and a job for a new task. A client transcribes FSDD
test clips with a shipped head back to back (`--clients` at once) for `--idle-s`
seconds before the job, then all through the job. Prints the table, writes
load_tests/results/training-job.json.

    nice -n 10 .venv/bin/python -m load_tests.bench_training_job --steps 100   # ~15 min here

`--model-dir models/whisper-tiny-en` runs the same on the Whisper model directory (its
shipped heads serve the traffic); results then go to training-job-whisper*.json.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

from load_tests.report import write_table
from load_tests.server_process import start_server
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import load_fsdd
from server.models.registry import WHISPER, model_kind_of

OUT = REPO_ROOT / "load_tests" / "results" / "training-job.json"


def fsdd_zip(root: Path, speaker: str, takes: range) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        rows = []
        for u in load_fsdd(root, takes, [speaker]):
            z.writestr(Path(u.audio).name, Path(u.audio).read_bytes())
            rows.append({"audio": Path(u.audio).name, "text": u.text})
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
    return buffer.getvalue()


class Traffic:
    """Back-to-back transcriptions from `clients` threads; latencies tagged by phase."""

    def __init__(self, url: str, clips: list[bytes], clients: int) -> None:
        self.url, self.clips, self.clients = url, clips, clients
        self.phase = "idle"
        self.samples: dict[str, list[float]] = {}
        self.errors = 0
        self.stop = threading.Event()

    def run(self, index: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = index
            while not self.stop.is_set():
                clip = self.clips[i % len(self.clips)]
                began = time.perf_counter()
                r = client.post(
                    f"{self.url}/v1/transcribe?task_id=fsdd-jackson",
                    content=clip,
                    headers={"content-type": "audio/wav"},
                )
                elapsed = 1000 * (time.perf_counter() - began)
                if r.status_code != 200:
                    self.errors += 1
                self.samples.setdefault(self.phase, []).append(elapsed)
                i += self.clients

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(k,)) for k in range(self.clients)]
        for t in threads:
            t.start()
        return threads


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speaker", default="nicolas")
    parser.add_argument("--takes", type=int, default=25, help="training takes per digit")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--max-train-s", type=float, default=3600.0)
    parser.add_argument("--nice", type=int, default=10, help="HRA_JOBS__NICE of the job")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "default")
    args = parser.parse_args()
    model_dir = args.model_dir.resolve()
    root = get_settings().fsdd_root
    clips = [Path(u.audio).read_bytes() for u in load_fsdd(root, range(30, 40), ["jackson"])]
    with tempfile.TemporaryDirectory() as tmp:
        heads = Path(tmp) / "heads"
        shutil.copytree(model_dir / "heads", heads)
        process, url = start_server(
            heads,
            HRA_MODEL_DIR=str(model_dir),
            HRA_STATE_DIR=str(Path(tmp) / "state"),
            HRA_JOBS__TORCH_THREADS="1",
            HRA_JOBS__NICE=str(args.nice),
            HRA_JOBS__MAX_TRAIN_SECONDS=str(args.max_train_s),
        )
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                files = {}
                for name, takes in (("train", range(args.takes)), ("eval", range(30, 40))):
                    data = fsdd_zip(root, args.speaker, takes)
                    r = http.post(
                        "/v1/files",
                        files={"file": (f"{name}.zip", data)},
                        data={"purpose": "fine-tune"},
                    )
                    r.raise_for_status()
                    files[name] = r.json()
                traffic = Traffic(url, clips, args.clients)
                threads = traffic.start()
                time.sleep(args.idle_s)
                traffic.phase = "training"
                began = time.monotonic()
                job = http.post(
                    "/v1/fine_tuning/jobs",
                    json={
                        "model": f"bench-{args.speaker}",
                        "training_file": files["train"]["id"],
                        "validation_file": files["eval"]["id"],
                        "hyperparameters": {"steps": args.steps},
                    },
                ).json()
                while job["status"] in ("queued", "running"):
                    time.sleep(1)
                    job = http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
                    if job["progress"]:
                        p = job["progress"]
                        print(f"\rstep {p['step']}/{p['steps']} eta {p['eta_s']} s", end="")
                print()
                wall = time.monotonic() - began
                traffic.stop.set()
                for t in threads:
                    t.join()
        finally:
            process.terminate()
            process.wait(30)
    result = job["result"]
    rows = []
    for phase in ("idle", "training"):
        lat = traffic.samples.get(phase, [0.0])
        rows.append(
            {
                "phase": phase,
                "requests": len(lat),
                "p50_ms": round(statistics.median(lat), 1),
                "p95_ms": round(pct(lat, 0.95), 1),
            }
        )
    suffix = "-whisper" if model_kind_of(model_dir) is WHISPER else ""
    suffix += f"-nice{args.nice}" if args.nice != 10 else ""
    write_table(rows, OUT.with_name(f"training-job-latency{suffix}.json"))
    summary = {
        "model_dir": model_dir.name,
        "speaker": args.speaker,
        "train_items": files["train"]["items"],
        "eval_items": files["eval"]["items"],
        "steps": args.steps,
        "nice": args.nice,
        "status": job["status"],
        "job_wall_s": round(wall, 1),
        "train_s": result.get("train_seconds"),
        "wer_base": round(result["wer"]["base"], 3) if result else None,
        "wer_new": round(result["wer"]["new"], 3) if result else None,
        "promoted": result.get("promoted"),
        "error": (job["error"] or {}).get("code"),
        "traffic_errors": traffic.errors,
    }
    write_table([summary], OUT.with_name(f"training-job{suffix}.json"))


if __name__ == "__main__":
    main()
