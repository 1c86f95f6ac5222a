"""Each tenant's share of the engine: the batcher fills batches by engine time used.

Real batcher, real (tiny) engine, real speech (tests/data/jfk.flac cut to lengths).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from adapters_store.head_format import HeadSpec
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio, read_audio_file
from server.config import REPO_ROOT, AudioSettings, BatchSettings
from server.models.ctc.recognizer import CtcRecognizer
from server.serving.batcher import Batcher, Work
from server.serving.engine import Engine
from server.serving.fair_share import FairShare

SPEECH = read_audio_file(REPO_ROOT / "tests" / "data" / "jfk.flac", AudioSettings())


def _clip(seconds: float) -> Audio:
    return Audio(SPEECH.samples[: int(seconds * SPEECH.rate)], SPEECH.rate)


@pytest.fixture
def make_batcher(tiny_model):
    def build(fair: FairShare | None = None, **settings) -> Batcher:
        spec = HeadSpec(
            "fp",
            tiny_model.backbone.hidden_dim,
            tiny_model.controller.dim,
            tiny_model.backbone.num_layers,
        )
        engine = Engine(CtcRecognizer(tiny_model), DeviceSlotPool(spec, 8, torch.device("cpu")))
        batcher = Batcher(engine, BatchSettings(**settings), 8, fair=fair)
        batcher.start()
        return batcher

    return build


async def _closed_loop(batcher: Batcher, tenant: str, seconds: float, until: float, done: list):
    """One client that always has a request waiting: the next as soon as one ends."""
    while time.monotonic() < until:
        await batcher.submit(Work(_clip(seconds), None, time.monotonic() + 30, tenant=tenant))
        done.append(tenant)


async def test_an_idle_tenants_request_goes_ahead_of_a_heavy_tenants_backlog(make_batcher):
    batcher = make_batcher(max_batch_size=1, max_wait_ms=0)
    finished: list[str] = []

    async def submit(tenant: str, seconds: float):
        await batcher.submit(Work(_clip(seconds), None, time.monotonic() + 60, tenant=tenant))
        finished.append(tenant)

    heavy = [asyncio.create_task(submit("heavy", 3.0)) for _ in range(8)]
    while not batcher._running:  # the heavy tenant's first batch is on the engine
        await asyncio.sleep(0.001)
    light = asyncio.create_task(submit("light", 1.0))
    await asyncio.gather(*heavy, light)
    # FIFO would serve it last (9th); by engine time used it is next after the one running
    assert finished.index("light") <= 1, finished
    await batcher.stop()


async def test_tenants_that_all_want_more_get_equal_engine_time_whatever_their_clip_lengths(
    make_batcher,
):
    fair = FairShare()
    batcher = make_batcher(fair, max_batch_size=2, max_wait_ms=0)
    until, done = time.monotonic() + 3.0, []
    clients = [_closed_loop(batcher, "long", 6.0, until, done) for _ in range(4)]
    clients += [_closed_loop(batcher, "short", 0.75, until, done) for _ in range(4)]
    await asyncio.gather(*clients)
    total = fair.used["long"] + fair.used["short"]
    # each of N=2 tenants that want more gets at least 0.8/N of the engine
    assert min(fair.used["long"], fair.used["short"]) >= 0.4 * total, fair.used
    # ... which, at 8x the audio per request, means far more requests for the short one
    assert done.count("short") >= 3 * done.count("long"), (done.count("short"), done.count("long"))
    await batcher.stop()


async def test_three_tenants_that_all_want_more_each_get_at_least_0_8_over_3_of_the_engine(
    make_batcher,
):
    fair = FairShare()
    batcher = make_batcher(fair, max_batch_size=2, max_wait_ms=0)
    until, done = time.monotonic() + 3.0, []
    lengths = {"long": 6.0, "mid": 2.0, "short": 0.75}
    clients = [
        _closed_loop(batcher, tenant, seconds, until, done)
        for tenant, seconds in lengths.items()
        for _ in range(3)
    ]
    await asyncio.gather(*clients)
    total = sum(fair.used[t] for t in lengths)
    assert min(fair.used[t] for t in lengths) >= 0.8 / 3 * total, fair.used
    await batcher.stop()


async def test_a_tenant_of_weight_two_gets_twice_the_engine_time_of_weight_one(make_batcher):
    fair = FairShare(weights={"gold": 2.0})
    batcher = make_batcher(fair, max_batch_size=2, max_wait_ms=0)
    until, done = time.monotonic() + 3.0, []
    clients = [
        _closed_loop(batcher, t, 2.0, until, done) for t in ("gold", "std") for _ in range(4)
    ]
    await asyncio.gather(*clients)
    ratio = fair.used["gold"] / fair.used["std"]
    assert 1.6 <= ratio <= 2.5, fair.used
    await batcher.stop()


def test_a_tenant_back_from_idle_starts_at_the_virtual_time_and_banks_no_credit():
    fair = FairShare()
    fair.arrive("a", [])
    fair.charge([("a", 10.0, 0)], engine_s=5.0)  # a used 5 s alone
    fair.arrive("b", ["a"])  # b arrives while a waits: starts level with a, not at 0
    assert fair.counter("b") == fair.counter("a") == pytest.approx(5.0)
    fair.charge([("a", 1.0, 0), ("b", 3.0, 0)], engine_s=4.0)  # split by work: 1 s and 3 s
    assert fair.used["a"] == pytest.approx(6.0) and fair.used["b"] == pytest.approx(3.0)
    fair.arrive("a", ["b"])  # a idled at 6 while b waits at 8: a comes back at 8, not 6
    assert fair.counter("a") == pytest.approx(8.0)
    fair.arrive("b", ["a"])  # b ahead of the virtual time keeps its own counter
    assert fair.counter("b") == pytest.approx(8.0)


def test_decoder_steps_weigh_into_an_items_share_of_a_batch():
    fair = FairShare(decode_step_cost_s=0.05)
    # same audio, but one row decoded 200 steps (a loop) and the other 0
    fair.charge([("looper", 1.0, 200), ("plain", 1.0, 0)], engine_s=12.0)  # 11 : 1 units
    assert fair.used["looper"] == pytest.approx(11.0) and fair.used["plain"] == pytest.approx(1.0)


def test_accounts_are_bounded_and_only_idle_tenants_are_dropped():
    fair = FairShare()
    for i in range(50):
        fair.charge([(f"t{i}", 1.0, 0)], engine_s=1.0)
    fair.forget_idle(["t0", "t1"], keep=10)
    assert len(fair.counters) == 10 and {"t0", "t1"} <= set(fair.counters)


def test_tenants_whose_items_cost_far_more_per_second_do_not_share_others_batches():
    fair = FairShare(decode_step_cost_s=0.05)
    for _ in range(3):  # a looping Whisper row: 200 decoder steps for 1 s of audio
        fair.charge([("looper", 1.0, 200), ("calm", 1.0, 5), ("other", 2.0, 10)], engine_s=3.0)
    assert not fair.compatible("looper", "calm") and not fair.compatible("calm", "looper")
    assert fair.compatible("calm", "other") and fair.compatible("new-tenant", "calm")
