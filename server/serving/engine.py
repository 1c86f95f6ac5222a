"""The engine: one per device, run from its own thread, one fused forward per bucket.

It knows nothing of queues or HTTP: it takes a list of (audio, resolved head) and
returns one result per item, a transcript or the typed error of that item alone.
What is model-specific (features, the fused pass, decoding a row) is its Recognizer
(server/models/recognizer.py: CTC backbones, or Whisper); the rest is here.

Failure model (a property of the interface, not a retry around it):
    featurize        per item; an item whose audio cannot be featurized fails alone
    fused forward    per length bucket (server/models/length_buckets.py); if a bucket raises,
                     its members run again in halves until only the culprits fail
                     (at most 2 log2(B) extra passes for one culprit), each culprit
                     logged with its request id and counted in `isolated_failures`
    decode           per item (Recognizer.decode); greedy on this thread; a deferred decode
                     (CTC: within a task's vocabulary, up to `max_vocabulary_cost`
                     state-frames) is handed to a
                     decoder thread, so it delays only its own request, never its
                     batch-mates or the next batch; one that raises fails only its item;
                     the decoder takes tenants in turn and skips cancelled decodes
Admission (server/serving/admission.py) turns away what is known to fail before it can join a
batch; the bisection is the second line for what nobody foresaw.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

import kernels
from adapters_store.head_format import HeadRecord
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio
from server.errors import HraError, InferenceFailed
from server.models.ctc.features import SAMPLE_RATE
from server.models.length_buckets import plan_buckets
from server.models.recognizer import Deferred, Recognizer
from server.models.transcript import Decoded, DecodeOptions

logger = logging.getLogger(__name__)

Outcome = Decoded | HraError  # a transcript, or this item's own error
ItemResult = Outcome | Future  # Future[Outcome]: a vocabulary decode still running


@dataclass(frozen=True)
class EngineInput:
    audio: Audio  # resampled and featurized here: the engine's thread does all torch work
    head: HeadRecord | None  # None: backbone only (task "base")
    request_id: str = "-"  # for the logs, when this item fails
    tenant: str | None = None  # whose turn its vocabulary decode takes (round robin)
    options: DecodeOptions = DecodeOptions()  # language, word times


@dataclass(frozen=True)
class EngineOutput:
    results: list[ItemResult]  # in input order: a transcript, its own error, or a Future
    forward_passes: int  # bucket passes, re-runs of a failed bucket included
    isolated_failures: int  # items that failed inside a pass that had to be split

    def wait(self) -> list[Outcome]:
        """Every result, deferred vocabulary decodes waited for (synchronous callers)."""
        return [r.result() if isinstance(r, Future) else r for r in self.results]


class Engine:
    """`recognizer`: the served model (server/models/recognizer.py; loaded by
    server/models/registry.py)."""

    def __init__(
        self,
        recognizer: Recognizer,
        slots: DeviceSlotPool,
        forward_overhead_frames: int | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.model = recognizer.model
        self.slots = slots
        self.device = slots.device
        if forward_overhead_frames is None:
            forward_overhead_frames = recognizer.forward_overhead_frames(self.device)
        self.forward_overhead_frames = forward_overhead_frames
        self.frame_seconds = recognizer.frame_seconds
        self.min_samples = recognizer.min_samples
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="vocabulary-decoder")
        # Decodes wait per tenant and the decoder takes tenants in turn: one tenant's
        # queued decodes delay another's by at most one decode each, not all of them.
        self._turns: OrderedDict[str | None, deque[tuple[Future, Deferred, EngineInput]]] = (
            OrderedDict()
        )
        self._turns_lock = threading.Lock()
        self.kernel = kernels.select_kernel(self.device)  # decided once, held here
        logger.info("head kernel: %s (%s)", self.kernel.name, self.kernel.reason)

    def featurize(self, audio: Audio) -> torch.Tensor:
        """One clip's features, on the model's device."""
        return self.recognizer.featurize(audio, self.device)

    @torch.inference_mode()
    def run(self, batch: list[EngineInput]) -> EngineOutput:
        results: list[ItemResult | None] = [None] * len(batch)
        features: dict[int, torch.Tensor] = {}
        for i, item in enumerate(batch):
            try:
                features[i] = self.featurize(item.audio)
            except Exception as exc:
                results[i] = _culprit(item, "features", exc)
        ready = list(features)
        buckets = plan_buckets([features[i].shape[0] for i in ready], self.forward_overhead_frames)
        run = _Run(self, batch, features, results)
        for bucket in buckets:
            run.isolated([ready[j] for j in bucket])
        isolated = run.isolated_failures + len(batch) - len(features)
        return EngineOutput(results, run.passes, isolated)  # every slot is filled by now

    def decode_later(self, deferred: Deferred, item: EngineInput) -> Future:
        """A deferred decode (CTC: within the item's vocabulary) on the decoder thread:
        Future[Outcome]. Cancelling the Future before its turn skips the decode."""
        future: Future = Future()
        with self._turns_lock:
            self._turns.setdefault(item.tenant, deque()).append((future, deferred, item))
        self._decoder.submit(self._decode_next)  # one call per queued decode
        return future

    def _decode_next(self) -> None:
        with self._turns_lock:  # the tenant first in line, then to the back of the line
            tenant, queue = self._turns.popitem(last=False)
            future, deferred, item = queue.popleft()
            if queue:
                self._turns[tenant] = queue
        if future.set_running_or_notify_cancel():
            future.set_result(_decode_deferred(deferred, item))

    def warm_up(self) -> None:
        """One tiny forward so the first request does not pay for lazy init."""
        (result,) = self.run(
            [EngineInput(Audio(torch.zeros(SAMPLE_RATE), SAMPLE_RATE), None)]
        ).wait()
        if isinstance(result, Exception):
            raise result

    def close(self) -> None:
        self._decoder.shutdown(wait=True)


class _Run:
    """One engine.run: the passes it made and the results it filled in."""

    def __init__(self, engine: Engine, batch, features, results) -> None:
        self.engine = engine
        self.batch: list[EngineInput] = batch
        self.features: dict[int, torch.Tensor] = features
        self.results: list[ItemResult | None] = results
        self.passes = 0
        self.isolated_failures = 0

    def isolated(self, members: list[int]) -> None:
        """Forward `members` as one fused pass; if it raises, halves, down to the culprits."""
        self.passes += 1
        try:
            output = self._forward(members)
        except Exception as exc:
            if len(members) == 1:
                self.results[members[0]] = _culprit(self.batch[members[0]], "forward", exc)
                self.isolated_failures += 1
                return
            logger.warning("a fused pass of %d failed (%s); splitting it", len(members), exc)
            half = len(members) // 2
            self.isolated(members[:half])
            self.isolated(members[half:])
            return
        for row, i in enumerate(members):
            item = self.batch[i]
            try:
                result = self.engine.recognizer.decode(output, row, item.head)
                if not isinstance(result, Decoded):  # deferred: the decoder thread runs it
                    result = self.engine.decode_later(result, item)
                self.results[i] = result
            except Exception as exc:
                self.results[i] = _culprit(item, "decode", exc)

    def _forward(self, members: list[int]) -> object:
        heads = [self.batch[i].head for i in members]
        head_batch = self.engine.slots.head_batch(heads, self.engine.kernel)
        feats = [self.features[i] for i in members]
        options = [self.batch[i].options for i in members]
        return self.engine.recognizer.forward(feats, head_batch, self.engine.device, options)


def _decode_deferred(deferred: Deferred, item: EngineInput) -> Outcome:
    try:
        return deferred()
    except Exception as exc:
        return _culprit(item, "decode", exc)


def _culprit(item: EngineInput, stage: str, exc: Exception) -> HraError:
    if isinstance(exc, HraError) and exc.public:  # a typed refusal (e.g. a head no slot holds)
        return exc
    logger.error(
        "request %s failed alone in %s (%s: %s)", item.request_id, stage, type(exc).__name__, exc
    )
    return InferenceFailed(f"this request's {stage} step failed: {type(exc).__name__}", stage)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
