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
from server.errors import InvalidRequest, UnsupportedHyperparameter
from server.jobs.records import Hyperparameters, JobRecord, JobStopped
from server.models.registry import HRA_CTC, KINDS, WHISPER, ModelKind, model_kind_of
from server.models.whisper.frontend import SAMPLE_RATE, WINDOW_SAMPLES

if TYPE_CHECKING:
    from adapters_store.head_format import HeadRecord, HeadSpec
    from server.data.manifest import Utterance

logger = logging.getLogger(__name__)

OnStep = Callable[[int, float], None]
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

    def __init__(self, settings: Settings) -> None:
        """settings.model_dir's model, loaded for training."""
        ...

    def train(self, record: JobRecord, items: list[Utterance], on_step: OnStep) -> HeadRecord:
        """One head for `record.task_id`, owned by the job's owner (version 0: the store
        numbers it)."""
        ...

    def scorer(self, items: list[Utterance], between: Callable[[], None]) -> Scorer:
        """WER of a head (None: base) on `items`; `between` runs between chunks (it may
        raise to stop the job)."""
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


def load_job_model(settings: Settings) -> JobModel:
    kind = model_kind_of(settings.model_dir)
    trainer = TRAINERS.get(kind)
    if trainer is None:  # refused at job creation; a model dir swapped since then
        raise InvalidRequest(f"fine-tuning jobs do not train heads for {kind.label} models")
    logger.info("training a head on %s (%s)", settings.model_dir.name, kind.name)
    return trainer(settings)


class CtcHeads:
    unsupported: dict[str, str] = {}  # every hyperparameter applies

    def __init__(self, settings: Settings) -> None:
        from server.models.checkpoint import head_spec, load_model

        self.settings = settings
        self.model, self.fp = load_model(settings.model_dir / "model.safetensors")
        self.spec = head_spec(self.model, self.fp, settings.heads.max_ranks)

    def train(self, record: JobRecord, items: list[Utterance], on_step: OnStep) -> HeadRecord:
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
        )

    def scorer(self, items: list[Utterance], between: Callable[[], None]) -> Scorer:
        from server.data.manifest import load_audio
        from server.models.ctc.tokenizer import CharTokenizer
        from server.training.evaluate import wers

        featurize = self.model.backbone.featurize
        feats = [featurize(load_audio(u.audio, self.settings.audio)) for u in items]
        refs = [CharTokenizer.normalize(u.text) for u in items]
        return lambda head: wers(self.model, feats, refs, head, ())[0]


class WhisperHeads:
    """Loaded as served (load_recognizer: the manifest's window, controller, fingerprint
    check), on the CPU; the same objects train the head and then decode with it."""

    unsupported = WHISPER_UNSUPPORTED

    def __init__(self, settings: Settings) -> None:
        import torch

        from server.models.checkpoint import head_spec
        from server.models.registry import load_recognizer

        self.settings = settings
        self.recognizer, self.fp = load_recognizer(settings, torch.device("cpu"))
        self.spec = head_spec(self.recognizer.model, self.fp, settings.heads.max_ranks)

    def train(self, record: JobRecord, items: list[Utterance], on_step: OnStep) -> HeadRecord:
        from adapters_store.head_format import HeadType
        from server.training.trainer import TrainConfig
        from server.training.whisper.data import WhisperSet
        from server.training.whisper.recipe import train_one_head

        hp = record.hyperparameters
        self._check_fits(items, hp.speeds)
        whisper = self.recognizer.whisper
        data = WhisperSet.build(items, whisper, speeds=hp.speeds, max_tokens=WHISPER_MAX_TOKENS)
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
        feats = [featurize(load_audio(u.audio, self.settings.audio)) for u in items]
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
