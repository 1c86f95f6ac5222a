"""What a fine-tuning job does differently per served model kind: one small class each,
keyed by the registry's kind objects (TRAINERS; server/models/registry.py).

    hra_ctc  CtcHeads      server/training/new_head.py (CTC loss); greedy CTC WER
    whisper  WhisperHeads  server/training/whisper/ (teacher-forced decoder cross-entropy,
                           8 clips a step, in the window the model dir serves with); WER of
                           transcripts decoded as served, both sides normalized
                           (server/training/whisper/text.py)

Both load the model directory as the server does, train one head with backbone and
controller frozen, call the job's step callback after every step (progress, cancel,
time limit), and score a head (None: base) on held-out items. Everything else (split,
promotion, registering) is the runner's, the same for every kind.

`refuse_unsupported` runs at job creation: a hyperparameter that does not apply to the
served kind is a 400 `unsupported_hyperparameter`, never a job that fails later or one
that silently trains something else than asked. Its default value is accepted (it asks
for nothing), so a job's own `hyperparameters` object can be sent back as is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from server.config import Settings
from server.errors import InvalidRequest, JobTooLarge, UnsupportedHyperparameter
from server.jobs.records import Hyperparameters, JobRecord, JobStopped
from server.models.registry import HRA_CTC, KINDS, WHISPER, ModelKind, model_kind_of
from server.models.whisper.frontend import SAMPLE_RATE, WINDOW_SAMPLES

if TYPE_CHECKING:
    from adapters_store.head_format import HeadRecord, HeadSpec
    from server.data.manifest import Utterance

logger = logging.getLogger(__name__)

OnStep = Callable[[int, float], None]
Between = Callable[[], None]
Scorer = Callable[["HeadRecord | None"], float]

WHISPER_ROWS = 8  # clips a step: the recipe's (server/training/whisper/recipe.py)
WHISPER_MAX_TOKENS = 200  # a transcript's BPE tokens (WhisperSet.build; decoder context 448)
EVAL_CHUNK = 16  # held-out clips per fused pass; the job's checks run between chunks

# hyperparameter -> why it does not apply to Whisper
WHISPER_UNSUPPORTED: dict[str, str] = {
    "vocabulary_from_data": "Whisper decodes BPE tokens; a task vocabulary only restricts "
    "CTC decoding",
    "tempos": "tempo copies are stretched CTC features; Whisper jobs take `speeds`",
    "max_frames": f"a Whisper step is {WHISPER_ROWS} clips, each at most one 30 s window",
}


class JobModel(Protocol):
    """The served model as a job sees it."""

    spec: HeadSpec  # what the store checks the new head (and the current one) against
    unsupported: dict[str, str]  # hyperparameter -> why it does not apply (a class attribute)
    feature_bytes_per_s: int  # a second of audio's training features, at most (class attribute)

    def __init__(self, settings: Settings) -> None:
        """settings.model_dir's model, loaded for training."""
        ...

    def train(
        self, record: JobRecord, items: list[Utterance], on_step: OnStep, between: Between
    ) -> HeadRecord:
        """One head for `record.task_id`, owned by the job's owner (version 0: the store
        numbers it); `between` runs before every item's features, `on_step` after every
        step (either may raise to stop the job)."""
        ...

    def scorer(self, items: list[Utterance], between: Callable[[], None]) -> Scorer:
        """WER of a head (None: base) on `items`; `between` runs before every item's
        features and between chunks (it may raise to stop the job)."""
        ...


def refuse_unsupported(kind: ModelKind, hp: Hyperparameters) -> None:
    """At job creation: 400 for a model kind jobs cannot train, or a hyperparameter that
    does not apply to it."""
    trainer = TRAINERS.get(kind)
    if trainer is None:
        trained = [k.name for k in KINDS.values() if k in TRAINERS]
        raise InvalidRequest(
            f"fine-tuning jobs train heads for {' and '.join(trained)} model directories; "
            f"this server serves a {kind.name!r} one"
        )
    defaults = Hyperparameters(steps=hp.steps)
    for name, why in trainer.unsupported.items():
        if getattr(hp, name) != getattr(defaults, name):
            raise UnsupportedHyperparameter(f"{name} does not apply to {kind.label} models: {why}")


def augmented_copies(hp: Hyperparameters) -> float:
    """Seconds of features per second of audio: each speed s plays 1/s as long, and each
    tempo t adds a copy of every speed copy 1/t as long (server/training/data.py)."""
    return sum(1 / s for s in hp.speeds) * (1 + sum(1 / t for t in hp.tempos))


def feature_bytes(kind: ModelKind, hp: Hyperparameters, train_s: float, eval_s: float) -> int:
    """An upper bound on a job's feature memory: its training items with their augmented
    copies, plus the evaluation items once (a held-out share of the training file is at
    most one of its copies, so `max(copies, 1)` covers it; `eval_s`: a validation file)."""
    per_s = TRAINERS[kind].feature_bytes_per_s
    return math.ceil((train_s * max(augmented_copies(hp), 1.0) + eval_s) * per_s)


def refuse_too_large(
    kind: ModelKind, hp: Hyperparameters, train_s: float, eval_s: float, limit: int
) -> None:
    """At job creation: 413 `job_too_large` when the features would pass `limit` bytes."""
    estimate = feature_bytes(kind, hp, train_s, eval_s)
    if estimate > limit:
        raise JobTooLarge(
            f"this job's features would take about {estimate / 2**20:.0f} MiB "
            f"({train_s:.0f} s of training audio x {augmented_copies(hp):.2f} augmented copies"
            f"{f' + {eval_s:.0f} s of validation audio' if eval_s else ''}); the limit is "
            f"{limit / 2**20:.0f} MiB: use fewer speeds or tempos, or a smaller dataset"
        )


def load_job_model(settings: Settings) -> JobModel:
    kind = model_kind_of(settings.model_dir)
    trainer = TRAINERS.get(kind)
    if trainer is None:  # refused at job creation; a model dir swapped since then
        raise InvalidRequest(f"fine-tuning jobs do not train heads for {kind.label} models")
    logger.info("training a head on %s (%s)", settings.model_dir.name, kind.name)
    return trainer(settings)


class CtcHeads:
    unsupported: dict[str, str] = {}  # every hyperparameter applies
    # a CTC backbone's input, at most: the raw 16 kHz float32 waveform (wav2vec2-style
    # backbones); log-mel front ends take less (the default's 64 bands: 25.6 KB/s)
    feature_bytes_per_s = 16_000 * 4

    def __init__(self, settings: Settings) -> None:
        from server.models.checkpoint import head_spec, load_model

        self.settings = settings
        self.model, self.fp = load_model(settings.model_dir / "model.safetensors")
        self.spec = head_spec(self.model, self.fp, settings.heads.max_ranks)

    def train(
        self, record: JobRecord, items: list[Utterance], on_step: OnStep, between: Between
    ) -> HeadRecord:
        from server.training.new_head import HeadRecipe, train_new_head

        hp = record.hyperparameters
        recipe = HeadRecipe(
            head_type=hp.head_type,
            rank=hp.rank,
            steps=hp.steps,
            lr=hp.learning_rate,
            speeds=hp.speeds,
            tempos=hp.tempos,
            max_frames=hp.max_frames,
        )
        return train_new_head(
            self.model,
            self.fp,
            items,
            record.task_id,
            recipe,
            owner=record.owner,
            vocabulary_from_data=hp.vocabulary_from_data,
            on_step=on_step,
            between=between,
        )

    def scorer(self, items: list[Utterance], between: Callable[[], None]) -> Scorer:
        from server.data.manifest import load_audio
        from server.models.ctc.tokenizer import CharTokenizer
        from server.training.evaluate import wers

        featurize = self.model.backbone.featurize
        feats = []
        for u in items:
            between()
            feats.append(featurize(load_audio(u.audio, self.settings.audio)))
        refs = [CharTokenizer.normalize(u.text) for u in items]
        return lambda head: wers(self.model, feats, refs, head, (), between=between)[0]


class WhisperHeads:
    """Loaded as served (load_recognizer: the manifest's window, controller, fingerprint
    check), on the CPU; the same objects train the head and then decode with it."""

    unsupported = WHISPER_UNSUPPORTED
    feature_bytes_per_s = 100 * 128 * 4  # log-mel: 100 frames/s, at most 128 bands, float32

    def __init__(self, settings: Settings) -> None:
        import torch

        from server.models.checkpoint import head_spec
        from server.models.registry import load_recognizer

        self.settings = settings
        self.recognizer, self.fp = load_recognizer(settings, torch.device("cpu"))
        self.spec = head_spec(self.recognizer.model, self.fp, settings.heads.max_ranks)

    def train(
        self, record: JobRecord, items: list[Utterance], on_step: OnStep, between: Between
    ) -> HeadRecord:
        from adapters_store.head_format import HeadType
        from server.training.trainer import TrainConfig
        from server.training.whisper.data import WhisperSet
        from server.training.whisper.recipe import train_one_head

        hp = record.hyperparameters
        self._check_fits(items, hp.speeds)
        whisper = self.recognizer.whisper
        data = WhisperSet.build(
            items, whisper, speeds=hp.speeds, max_tokens=WHISPER_MAX_TOKENS, between=between
        )
        head_type = HeadType(hp.head_type)
        rank = hp.rank if head_type == HeadType.FFN else 0
        config = TrainConfig(steps=hp.steps, lr=hp.learning_rate, warmup=min(50, hp.steps // 5 + 1))
        head = train_one_head(
            whisper,
            self.recognizer.model,
            self.fp,
            data,
            head_type,
            rank,
            config,
            batch_rows=WHISPER_ROWS,
            on_step=on_step,
        )
        return head.with_meta(owner=record.owner or None)

    def scorer(self, items: list[Utterance], between: Callable[[], None]) -> Scorer:
        from server.data.manifest import load_audio
        from server.training.whisper.evaluate import transcripts, wer

        self._check_fits(items, (1.0,))
        featurize = self.recognizer.whisper.encoder.featurize
        feats = []
        for u in items:
            between()
            feats.append(featurize(load_audio(u.audio, self.settings.audio)))
        refs = [u.text for u in items]

        def score(head: HeadRecord | None) -> float:
            hyps: list[str] = []
            for start in range(0, len(feats), EVAL_CHUNK):
                hyps += transcripts(self.recognizer, feats[start : start + EVAL_CHUNK], head)
                between()
            return wer(refs, hyps)

        return score

    def _check_fits(self, items: list[Utterance], speeds: tuple[float, ...]) -> None:
        """Every clip (at each of `speeds`) in one 30 s window, every transcript within the
        decoder's budget: else the job fails here, before any training, saying why."""
        from server.training.whisper.text import target_text

        slowest = min(speeds)
        long_clips = sum(1 for u in items if _window_samples(u.audio, slowest) > WINDOW_SAMPLES)
        if long_clips:
            raise JobStopped(
                "failed",
                "clip_too_long",
                f"{long_clips} items are longer than Whisper's 30 s window"
                + (f" at speed {slowest:g}" if slowest != 1.0 else "")
                + ": cut them shorter",
            )
        tokenizer = self.recognizer.whisper.tokenizer
        budget = WHISPER_MAX_TOKENS
        long_texts = sum(1 for u in items if len(tokenizer.encode(target_text(u.text))) > budget)
        if long_texts:
            raise JobStopped(
                "failed",
                "transcript_too_long",
                f"{long_texts} transcripts are longer than {budget} tokens (Whisper's decoder)",
            )


def _window_samples(path: str, speed: float) -> int:
    """Samples the clip has once played at `speed` (as server/training/data._change_speed
    resamples it), from the WAV header only: datasets are stored as 16 kHz PCM WAV."""
    import soundfile as sf

    frames = sf.info(path).frames
    if speed == 1.0:
        return frames
    return math.ceil(frames * SAMPLE_RATE / int(SAMPLE_RATE * speed))


# What a fine-tuning job trains heads with, per model kind (a kind not here: refused).
TRAINERS: dict[ModelKind, type[JobModel]] = {HRA_CTC: CtcHeads, WHISPER: WhisperHeads}
