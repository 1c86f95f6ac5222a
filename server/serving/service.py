"""The ASR service: everything that lives as long as the process, wired once.

Routes call one method each; this is where store, caches, engine, batcher
and metrics meet. Built and torn down by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field, replace

import torch

from adapters_store.base import HeadStore, Quotas, TaskAccess, validate_visibility
from adapters_store.cache import HostHeadCache
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.errors import InvalidVocabulary
from adapters_store.head_format import (
    HeadMetadata,
    HeadRecord,
    decode_head,
    validate_task_id,
    validate_vocabulary,
)
from adapters_store.redis_store import RedisStore
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio, frames_to_hold, read_audio
from server.auth import OPEN, KeyRing, Principal
from server.config import Settings, StoreKind
from server.errors import HeadRejected, InvalidRequest, UnsupportedLanguage
from server.longform.budget import SampleBudget
from server.longform.policy import tails, window_plan
from server.longform.runner import Gone
from server.models.checkpoint import head_spec
from server.models.registry import load_recognizer
from server.models.transcript import DecodeOptions, FramePosteriors, SegmentTiming, WordTiming
from server.observability.log_safety import printable
from server.observability.metrics import Metrics
from server.serving.admission import Admission
from server.serving.batcher import Batcher, Work
from server.serving.engine import Engine, pick_device
from server.serving.run import TranscriptionRun
from server.serving.seeding import hint_if_empty, seed_state_dir

logger = logging.getLogger(__name__)
BASE_TASK = "base"


@dataclass(frozen=True)
class Transcription:
    task_id: str
    head_version: int | None
    text: str
    words: list[WordTiming]
    duration_s: float
    queue_ms: float
    compute_ms: float
    request_id: str
    segments: list[SegmentTiming] = field(default_factory=list)  # the model's own (Whisper)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    language: str | None = None  # the language decoded, where the model says (Whisper)
    temperature: float | None = None  # Whisper: the temperature its decode kept (fallback)
    frames: FramePosteriors | None = None  # CTC posteriors, for segment confidence


MAX_PROMPT_CHARS = 4000  # Whisper keeps the last 223 tokens of a prompt anyway
LANGUAGE_ALIASES = {"english": "en"}  # what the API accepted before languages existed


def check_language(language: str | None, known: tuple[str, ...]) -> str | None:
    """A request's `language` -> a code the model knows (None, "": the model decides).
    Bounded: at most 32 characters are looked at, and only echoed printable."""
    if language is None or language == "":
        return None
    code = LANGUAGE_ALIASES.get(language.lower(), language.lower()) if len(language) < 16 else ""
    if code in known:
        return code
    shown = printable(language[:32])
    if known == ("en",):
        raise UnsupportedLanguage(f"language {shown!r} is not supported; this model is English")
    raise UnsupportedLanguage(
        f"language {shown!r} is not supported; use an ISO 639-1 code this model knows "
        f"({', '.join(known[:8])}, ... {len(known)} in all)"
    )


class AsrService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring = KeyRing.load(settings.api_keys, settings.keys_file)
        if settings.open_access:
            logger.warning(
                "OPEN ACCESS: no API key required, every caller is admin "
                "(HRA_OPEN_ACCESS=true; for local use only)"
            )
        elif not len(self.keyring):
            raise ValueError(
                "no API keys configured: set HRA_API_KEYS or HRA_KEYS_FILE, "
                "or HRA_OPEN_ACCESS=true for local use"
            )
        self.metrics = Metrics(settings.busiest_tasks_tracked)
        device = pick_device(settings.device)
        recognizer, fp = load_recognizer(settings, device)
        self.vocabularies = recognizer.vocabularies
        self.languages = tuple(recognizer.languages)
        self.spec = head_spec(recognizer.model, fp, settings.heads.max_ranks)
        self.store = make_store(settings)
        self.cache = HostHeadCache(
            self.store,
            self.spec,
            settings.cache.host_heads,
            on_event=self.metrics.cache_event,
            on_load=self.metrics.head_loaded,
            source_name=settings.store.value,
            max_bytes=settings.heads.host_cache_bytes,
        )
        slots = DeviceSlotPool(
            self.spec, settings.cache.device_slots, device, on_event=self.metrics.cache_event
        )
        self.engine = Engine(recognizer, slots, settings.forward_overhead_frames)
        self.admission = Admission(
            self.engine.min_samples,
            self.engine.frame_seconds,
            settings.audio.max_vocabulary_cost,
            max_seconds=recognizer.max_seconds,
        )
        self.batcher = Batcher(
            self.engine,
            settings.batch,
            settings.cache.device_slots,
            observer=self.metrics,
            max_per_tenant=settings.queue_share.per_tenant(settings.batch.max_queue),
            max_windows_per_request=settings.longform.windows_in_flight,
        )
        self.budget = SampleBudget(
            settings.longform.max_held_samples, settings.longform.max_held_samples_per_tenant
        )
        # long audio is cut into windows that fit one pass (Whisper: 30 s) and stitched by
        # word times (every window asks for them: make_work below)
        self.window_plan = window_plan(settings.longform, recognizer.max_seconds)
        self.tails = tails(settings.longform, recognizer.max_seconds)
        logger.info(
            "model %s on %s (fingerprint %s), store %s",
            settings.model_dir,
            device,
            fp,
            settings.store.value,
        )

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

    async def resolve_head(self, task_id: str, caller: Principal = OPEN) -> HeadRecord | None:
        """The head a transcription of `task_id` uses, if `caller` may use it (else 404)."""
        if task_id == BASE_TASK:
            return None
        return await self._authorized_head(task_id, caller)

    async def _authorized_head(
        self, task_id: str, caller: Principal, allow_public: bool = True
    ) -> HeadRecord:
        """The task's current head, if `caller` may see it (else UnknownTask, as if missing).

        A tenant's right is checked on (owner, visibility) alone before a head it may
        not see is read from the store, so probing other tenants' ids loads none of
        their heads into the cache; the loaded head's own owner is checked again (an
        owner may change between the two reads). `allow_public=False` (download) asks
        for ownership: a public task is for using, not for copying.
        """
        validate_task_id(task_id)
        head = self.cache.peek(task_id)
        if caller.admin or (head is not None and caller.may_use(head.meta.owner)):
            return head if head is not None else await self.cache.resolve(task_id)
        access = await self.store.access(task_id)
        if not allow_public:
            access = TaskAccess(access.owner)
        caller.check_access(task_id, access)
        head = head if head is not None else await self.cache.resolve(task_id)
        if not access.public:
            caller.check_owner(task_id, head.meta.owner)
        return head

    async def transcribe(
        self,
        audio: bytes,
        task_id: str,
        caller: Principal = OPEN,
        language: str | None = None,
        words: bool = False,
        prompt: str | None = None,
        gone: Gone | None = None,
        temperature: float = 0.0,
    ) -> Transcription:
        """`language`: a code the model knows (None: the model decides); `words`: word
        times wanted (CTC models give them always; Whisper aligns only on request);
        `prompt`: text the audio continues (Whisper; CTC models ignore it); `temperature`:
        Whisper's first decoding temperature, with fallback (CTC models ignore it)."""
        run = await self.open_transcription(
            audio, task_id, caller, language, words, prompt, gone, temperature=temperature
        )
        async with contextlib.aclosing(run.pieces()) as pieces:
            async for _ in pieces:
                pass
        return self.finish(run)

    async def open_transcription(
        self,
        audio: bytes,
        task_id: str,
        caller: Principal = OPEN,
        language: str | None = None,
        words: bool = False,
        prompt: str | None = None,
        gone: Gone | None = None,
        temperature: float = 0.0,
    ) -> TranscriptionRun:
        """Resolve, decode and admit; the returned run transcribes as its pieces are read
        (server/serving/run.py). Audio longer than one window is cut into windows. Every
        refusal is raised here, before any text: a stream starts only for admitted audio."""
        began = time.monotonic()
        request_id = uuid.uuid4().hex[:16]
        if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"prompt is longer than {MAX_PROMPT_CHARS} characters")
        if not 0.0 <= temperature <= 1.0:  # NaN too
            raise InvalidRequest("temperature must be between 0 and 1")
        language = check_language(language, self.languages)
        options = DecodeOptions(language, words, prompt, float(temperature))
        head = await self.resolve_head(task_id, caller)
        hold, rate = await asyncio.to_thread(frames_to_hold, audio, self.settings.audio)
        plan = self.window_plan
        long = plan.needs_cutting(hold, rate)  # what the header says
        reservation = self.budget.reserve(hold if long else 0, _acting(caller))
        try:
            decoded = await asyncio.to_thread(read_audio, audio, self.settings.audio)
            got = decoded.samples.shape[0]
            if plan.needs_cutting(got, decoded.rate) and not long:
                reservation = self.budget.reserve(got, _acting(caller))  # its header said less
            reservation.shrink(got)
            windows = None
            if plan.needs_cutting(got, decoded.rate):
                # one pass over the file's energy: off the event loop (2 h: ~0.1-0.2 s)
                windows = await asyncio.to_thread(plan.plan, decoded.samples, decoded.rate)
                for longest in sorted(windows, key=lambda w: w.start - w.end)[:1]:
                    clip = Audio(decoded.samples[longest.start : longest.end], decoded.rate)
                    self.admission.check(clip, head)  # what each window costs, not the file
            else:
                self.admission.check(decoded, head)
        except BaseException:
            reservation.release()
            raise
        tenant = _acting(caller)
        window_options = replace(options, words=True)

        def make_work(clip: Audio, deadline: float, index: int | None) -> Work:
            if index is None:
                return Work(clip, head, deadline, request_id, tenant, options)
            # a window is stitched by its words' times: asked for whatever the client asked
            # (Whisper aligns only on request; the response shows them only if asked)
            return Work(
                clip, head, deadline, f"{request_id}/{index}", tenant, window_options, request_id
            )

        return TranscriptionRun(
            self.batcher,
            decoded,
            windows,
            make_work,
            began + self.settings.batch.request_timeout_s,
            self.settings.longform,
            reservation.release,
            gone,
            task_id=task_id,
            request_id=request_id,
            head=head,
            began=began,
            tails=self.tails,
        )

    def finish(self, run: TranscriptionRun) -> Transcription:
        """The transcript of a run whose pieces were all read."""
        decoded, seconds = run.decoded, run.audio.seconds
        assert decoded is not None, "finish() before the run's pieces were read"
        self.metrics.transcription_done(
            run.task_id, time.monotonic() - run.began, seconds, run.queue_s
        )
        return Transcription(
            task_id=run.task_id,
            head_version=run.head.meta.version if run.head else None,
            text=decoded.text,
            words=decoded.words,
            duration_s=seconds,
            queue_ms=1000 * run.queue_s,
            compute_ms=1000 * run.compute_s,
            request_id=run.request_id,
            segments=decoded.segments,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
            frames=decoded.frames,
            language=decoded.language,
            temperature=decoded.temperature,
        )

    async def register_head(
        self,
        task_id: str,
        data: bytes,
        metadata: dict | None,
        caller: Principal = OPEN,
        vocabulary: list[str] | None = None,
        visibility: str | None = None,
    ) -> HeadRecord:
        """`vocabulary`, when given, replaces the file's own (an empty list clears it).
        `visibility`, admins only, sets the task's in the same write (None keeps it).

        The store checks ownership, quotas and writes in one atomic step: of two
        tenants racing for a new id exactly one wins, the other gets UnknownTask.
        An admin update keeps the task's owner unless `metadata` names one.
        """
        if task_id == BASE_TASK:
            raise InvalidRequest("'base' is reserved for the backbone without a head")
        validate_task_id(task_id)
        if visibility is not None:
            check_may_set_visibility(caller, visibility)
        metadata = metadata or {}
        check_metadata(metadata)  # refused before the write, never after it
        record = await asyncio.to_thread(decode_head, data, self.spec)
        changes: dict = {"task_id": task_id, "created_at": time.time()}
        for key, value in metadata.items():
            if key in ("owner", "description"):
                changes[key] = None if value is None else str(value)
            else:
                changes.setdefault("extra", dict(record.meta.extra))[key] = value
        if vocabulary is not None:
            changes["vocabulary"] = validate_vocabulary(vocabulary)
        meta = replace(record.meta, **changes)
        if meta.vocabulary and not self.vocabularies:
            raise InvalidVocabulary(
                "this model decodes Whisper's BPE tokens, not a word loop: task vocabularies "
                "do not apply to it; upload the head without one"
            )
        check_head_metadata(meta)  # what the file itself brings, echoed back after the write
        stored = await self.store.put(
            HeadRecord(meta, record.tensors),
            acting_tenant=_acting(caller),
            keep_owner=caller.admin and "owner" not in metadata,
            visibility=visibility,
        )
        self.cache.invalidate(task_id)
        logger.info("registered %s version %d", printable(task_id), stored.meta.version)
        return stored

    async def rollback(self, task_id: str, version: int, caller: Principal = OPEN) -> None:
        validate_task_id(task_id)
        await self.store.set_current(task_id, version, acting_tenant=_acting(caller))
        self.cache.invalidate(task_id)

    async def delete_head(self, task_id: str, caller: Principal = OPEN) -> None:
        validate_task_id(task_id)
        await self.store.delete(task_id, acting_tenant=_acting(caller))
        self.cache.invalidate(task_id)

    async def set_visibility(
        self, task_id: str, visibility: object, caller: Principal = OPEN
    ) -> None:
        """Admins only: a tenant gets 404 on a task it may not see, else 400."""
        validate_task_id(task_id)
        if not caller.admin:
            caller.check_access(task_id, await self.store.access(task_id))
        check_may_set_visibility(caller, visibility)
        await self.store.set_visibility(task_id, visibility)  # type: ignore[arg-type]
        self.cache.invalidate(task_id)

    async def head_info(
        self, task_id: str, caller: Principal = OPEN
    ) -> tuple[HeadRecord, list[int], str]:
        """The current head, its versions and the task's visibility."""
        record = await self._authorized_head(task_id, caller)
        access = await self.store.access(task_id)
        return record, await self.store.versions(task_id), access.visibility

    async def head_bytes(self, task_id: str, caller: Principal = OPEN) -> bytes:
        record = await self._authorized_head(task_id, caller, allow_public=False)
        return await self.store.get_bytes(task_id, record.meta.version)

    async def list_tasks(self, offset: int, limit: int, caller: Principal = OPEN):
        """A page of the tasks `caller` manages: all for an admin, else its own."""
        owner = None if caller.admin else caller.tenant
        return await self.store.list_tasks(offset, limit, owner)

    async def list_usable(self, offset: int, limit: int, caller: Principal = OPEN):
        """A page of the tasks `caller` may use: all for an admin, else its own and public."""
        owner = None if caller.admin else caller.tenant
        return await self.store.list_tasks(offset, limit, owner, with_public=True)

    async def task_access(self, task_id: str, caller: Principal = OPEN) -> TaskAccess:
        """Owner and visibility of a task `caller` may use (else UnknownTask)."""
        validate_task_id(task_id)
        access = await self.store.access(task_id)
        caller.check_access(task_id, access)
        return access

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


def make_store(settings: Settings) -> HeadStore:
    """The configured store. The default DiskStore lives in the state dir, made on first
    start as a copy of the model directory's shipped heads (which are never written)."""
    quotas = Quotas(**settings.quotas.model_dump())
    if settings.store == StoreKind.REDIS:
        return RedisStore(
            settings.redis_url.get_secret_value(), settings.redis_prefix, quotas=quotas
        )
    seed_state_dir(settings)
    return AsyncDiskStore(settings.heads_path, quotas)


def check_may_set_visibility(caller: Principal, visibility: object) -> None:
    """Only admins set visibility (400 for a tenant); the value must be exact."""
    if not caller.admin:
        raise InvalidRequest("only admins set visibility")
    validate_visibility(visibility)


def _acting(caller: Principal) -> str | None:
    """The tenant a store write acts for; None for an admin (any task, no quota)."""
    return None if caller.admin else caller.tenant


MAX_METADATA_DEPTH = 16


def check_head_metadata(meta: HeadMetadata) -> None:
    """Fields of a head file's own metadata that are stored and answered as typed JSON."""
    for name in ("owner", "description"):
        if not isinstance(getattr(meta, name), str | None):
            raise HeadRejected(f"head metadata {name!r} must be a string")
    if not isinstance(meta.extra, dict):
        raise HeadRejected("head metadata 'extra' must be an object")
    if not isinstance(meta.rank, int) or isinstance(meta.rank, bool):
        raise HeadRejected("head metadata 'rank' must be an integer")
    try:
        check_metadata(meta.extra)
    except InvalidRequest as exc:
        raise HeadRejected(f"head file: {exc}") from None


def check_metadata(value: object, depth: int = 0) -> None:
    """Metadata is stored and echoed back as JSON: finite numbers, bounded nesting."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidRequest(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest("metadata numbers must be finite (no NaN or Infinity)")
    if isinstance(value, dict):
        for item in value.values():
            check_metadata(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_metadata(item, depth + 1)


def set_threads(settings: Settings) -> None:
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
