"""The composition root: everything that lives as long as the process, wired once.

`build_runtime(settings)` loads the model, opens the head store and builds the tiers
(store -> host cache -> device slots), the engine and batcher, and the use cases the
surfaces call: `heads` (HeadRegistry) and `transcription` (TranscriptionService). The
app's lifespan starts and stops it; nothing else constructs these parts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import torch

from adapters_store.base import HeadStore
from adapters_store.cache import HostHeadCache
from adapters_store.factory import make_store
from adapters_store.seeding import hint_if_empty
from adapters_store.slot_pool import DeviceSlotPool
from server.auth import OPEN, KeyRing, Principal
from server.config import Settings
from server.models.checkpoint import head_spec
from server.models.registry import load_recognizer
from server.observability.metrics import Metrics
from server.serving.admission import Admission
from server.serving.batcher import Batcher
from server.serving.engine import Engine, pick_device
from server.serving.fair_share import FairShare
from server.serving.heads import HeadRegistry
from server.serving.transcription import TranscriptionService

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    keyring: KeyRing
    metrics: Metrics
    store: HeadStore
    cache: HostHeadCache
    engine: Engine
    batcher: Batcher
    heads: HeadRegistry
    transcription: TranscriptionService

    async def start(self) -> None:
        await hint_if_empty(self.store, self.settings)
        await asyncio.to_thread(self.engine.warm_up)
        self.cache.start_watching()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        await self.cache.stop()
        await self.store.close()

    def authenticate(self, key: str | None) -> Principal:
        return OPEN if self.settings.open_access else self.keyring.authenticate(key)

    async def readiness(self) -> dict:
        store_ok = await self.store.ping()
        return {
            "model_loaded": True,
            "store": self.settings.store.value,
            "store_reachable": store_ok,
            "status": "ready" if store_ok else "degraded",
            "cached_heads": len(self.cache),
            "queue_depth": self.batcher.queue_depth,
        }


def build_runtime(settings: Settings) -> Runtime:
    keyring = KeyRing.load(settings.api_keys, settings.keys_file)
    if settings.open_access:
        logger.warning(
            "OPEN ACCESS: no API key required, every caller is admin "
            "(HRA_OPEN_ACCESS=true; for local use only)"
        )
    elif not len(keyring):
        raise ValueError(
            "no API keys configured: set HRA_API_KEYS or HRA_KEYS_FILE, "
            "or HRA_OPEN_ACCESS=true for local use"
        )
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    metrics = Metrics(settings.busiest_tasks_tracked)
    device = pick_device(settings.device)
    recognizer, fingerprint = load_recognizer(settings, device)
    spec = head_spec(recognizer.model, fingerprint, settings.heads.max_ranks)
    store = make_store(settings)
    cache = HostHeadCache(
        store,
        spec,
        settings.cache.host_heads,
        on_event=metrics.cache_event,
        on_load=metrics.head_loaded,
        source_name=settings.store.value,
        max_bytes=settings.heads.host_cache_bytes,
    )
    slots = DeviceSlotPool(spec, settings.cache.device_slots, device, on_event=metrics.cache_event)
    engine = Engine(recognizer, slots, settings.forward_overhead_frames)
    admission = Admission(
        engine.min_samples,
        engine.frame_seconds,
        settings.audio.max_vocabulary_cost,
        max_seconds=recognizer.max_seconds,
    )
    batcher = Batcher(
        engine,
        settings.batch,
        settings.cache.device_slots,
        observer=metrics,
        max_per_tenant=settings.queue_share.per_tenant(settings.batch.max_queue),
        max_windows_per_request=settings.longform.windows_in_flight,
        fair=FairShare(
            settings.fair_share.weights,
            settings.fair_share.default_weight,
            settings.fair_share.decode_step_cost_s,
        ),
        max_accounts=settings.fair_share.max_accounts,
    )
    metrics.watch_engine_shares(lambda: batcher.fair.used)
    heads = HeadRegistry(store, cache, spec, vocabularies=bool(recognizer.vocabularies))
    transcription = TranscriptionService(
        settings,
        heads,
        batcher,
        admission,
        metrics,
        languages=tuple(recognizer.languages),
        max_seconds=recognizer.max_seconds,
    )
    logger.info(
        "model %s on %s (fingerprint %s), store %s",
        settings.model_dir,
        device,
        fingerprint,
        settings.store.value,
    )
    return Runtime(settings, keyring, metrics, store, cache, engine, batcher, heads, transcription)
