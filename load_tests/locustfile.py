"""Locust users for the HRA-ASR load scenarios; driven by load_tests/run_load.py.

Configuration comes from environment variables set by run_load.py:
    HRA_LOAD_CLIPS     folder of WAV clips to send
    HRA_LOAD_TASKS     task ids, comma-separated, most popular first (or "@file")
    HRA_LOAD_ZIPF      Zipf exponent of task popularity (0 = uniform)
    HRA_LOAD_SWAP_S    > 0: one extra user re-registers a head every that many seconds
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

from locust import FastHttpUser, HttpUser, between, constant, events, task

CLIPS = [p.read_bytes() for p in sorted(Path(os.environ["HRA_LOAD_CLIPS"]).glob("*.wav"))]
_raw_tasks = os.environ.get("HRA_LOAD_TASKS", "base")
TASKS = (
    Path(_raw_tasks[1:]).read_text().split()
    if _raw_tasks.startswith("@")
    else _raw_tasks.split(",")
)
ZIPF = float(os.environ.get("HRA_LOAD_ZIPF", "1.0"))
CUMULATIVE = list(itertools.accumulate(1 / (rank + 1) ** ZIPF for rank in range(len(TASKS))))
SWAP_S = float(os.environ.get("HRA_LOAD_SWAP_S", "0"))


class Transcriber(FastHttpUser):
    """Closed loop: send, wait for the transcript, send again."""

    wait_time = constant(0)

    @task
    def transcribe(self) -> None:
        task_id = random.choices(TASKS, cum_weights=CUMULATIVE)[0]
        self.client.post(
            f"/v1/transcribe?task_id={task_id}",
            data=random.choice(CLIPS),
            headers={"content-type": "audio/wav"},
            name="/v1/transcribe",
        )


class Swapper(HttpUser):  # requests-based: multipart uploads
    """Re-registers popular heads during the load (the hot-swap storm)."""

    fixed_count = 1 if SWAP_S > 0 else 0
    weight = 0 if SWAP_S <= 0 else 1
    wait_time = between(SWAP_S * 0.5, SWAP_S * 1.5) if SWAP_S > 0 else constant(3600)

    def on_start(self) -> None:
        self.heads = {}
        for task_id in TASKS[:5]:
            response = self.client.get(f"/v1/tasks/{task_id}/head", name="/v1/tasks/[id]/head")
            self.heads[task_id] = response.content

    @task
    def swap(self) -> None:
        task_id = random.choice(list(self.heads))
        self.client.request(
            "PUT",
            f"/v1/tasks/{task_id}",
            name="/v1/tasks/[id] PUT",
            files={"file": ("head.safetensors", self.heads[task_id])},
        )


@events.init.add_listener
def _report_config(environment, **kwargs) -> None:
    print(f"locustfile: {len(CLIPS)} clips, {len(TASKS)} tasks, zipf {ZIPF}, swap {SWAP_S}s")
