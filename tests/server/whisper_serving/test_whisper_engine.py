"""The engine with the Whisper recognizer: mixed-task fused batches, failure isolation."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadRecord, HeadType
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio
from server.audio.resample import resample
from server.config import Settings
from server.data.synthetic import speak
from server.errors import HeadRejected, ServingError
from server.models.checkpoint import head_spec
from server.models.registry import load_recognizer
from server.serving.engine import Engine, EngineInput
from tests.server.models.whisper.helpers import SENTENCES
from tests.server.whisper_serving.helpers import FINGERPRINT, WHISPER_DIR, head_record

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engine():
    # pinned to `pad`: the model dir serves in `cut` (its manifest), where these random
    # heads make greedy decoding loop to max_tokens (measured: 128 s vs 43 s a test)
    settings = Settings(model_dir=WHISPER_DIR, whisper={"window": "pad"})
    recognizer, fp = load_recognizer(settings, CPU)
    assert fp == FINGERPRINT
    engine = Engine(recognizer, DeviceSlotPool(head_spec(recognizer.model, fp), 4, CPU))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def clips() -> list[Audio]:
    return [Audio(speak(t, v, s, 50), 16_000) for t, v, s in SENTENCES[:2]]


def test_a_batch_of_different_tasks_equals_each_utterance_run_alone(engine, clips):
    heads = [
        head_record(f"t-{t.value}", t, seed, scale=0.05) for seed, t in enumerate(HeadType, start=1)
    ]
    batch = [
        EngineInput(clips[0], heads[0]),
        EngineInput(clips[1], heads[1]),
        EngineInput(clips[0], heads[2]),
        EngineInput(clips[1], None),
    ]
    output = engine.run(batch)
    together = output.wait()
    assert output.forward_passes == 1  # one bucket per batch for Whisper
    alone = [engine.run([item]).wait()[0] for item in batch]
    for t, a in zip(together, alone):
        assert t.text == a.text
        assert t.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-3)
        assert t.no_speech_prob == pytest.approx(a.no_speech_prob, abs=1e-3)
    # the heads really act: the same clip under base and under a head scores differently
    (base0,) = engine.run([EngineInput(clips[0], None)]).wait()
    assert abs(together[0].avg_logprob - base0.avg_logprob) > 1e-4
    assert together[0].segments and not together[0].words  # segment times, no word times


def test_a_head_that_breaks_the_fused_pass_fails_alone(engine, clips):
    good = head_record("good", HeadType.LINEAR, 1)
    bad = HeadRecord(
        good.with_meta(task_id="bad", version=9).meta, {"V": good.tensors["V"].repeat(2, 1)}
    )
    batch = [EngineInput(clips[0], good), EngineInput(clips[1], bad, "r-bad")]
    output = engine.run(batch)
    results = output.wait()
    assert isinstance(results[1], HeadRejected)  # its own typed refusal, alone
    assert not isinstance(results[0], ServingError)
    assert results[0].text == engine.run(batch[:1]).wait()[0].text


@pytest.mark.slow
def test_a_batch_of_32_different_tasks_gives_each_utterance_its_solo_transcript():
    """The issue's must-show, as served: the model dir's own window (`cut`) and its trained
    heads, 32 distinct tasks in ONE fused pass (encoder + every decoding step), each row's
    transcript equal to its solo run. 32 tasks: every shipped linear and FFN head, and
    linear heads mixed from pairs of them for the rest."""
    settings = Settings(model_dir=WHISPER_DIR)
    recognizer, fp = load_recognizer(settings, CPU)
    shipped = [
        DiskStore(WHISPER_DIR / folder).get(task).with_meta(task_id=f"{folder}/{task}")
        for folder in ("heads", "baselines/ffn")
        for task in DiskStore(WHISPER_DIR / folder).task_ids()
    ]
    linear = [h for h in shipped if h.meta.head_type == "linear"]
    mixed = [
        HeadRecord(a.meta, {"V": (a.tensors["V"] + b.tensors["V"]) / 2}).with_meta(
            task_id=f"mix-{i}"
        )
        for i, (a, b) in enumerate(zip(linear, linear[1:] + linear[:1]))
    ]
    heads = (shipped + mixed)[:32]
    assert len({h.meta.task_id for h in heads}) == 32 and all(
        h.meta.fingerprint == fp for h in heads
    )
    clips = [Audio(speak(t, v, s, 50), 16_000) for t, v, s in SENTENCES]
    clips += [Audio(wave, 16_000) for wave, _ in _fsdd_clips()]
    batch = [EngineInput(clips[i % len(clips)], head) for i, head in enumerate(heads)]
    engine = Engine(recognizer, DeviceSlotPool(head_spec(recognizer.model, fp), 32, CPU))
    try:
        output = engine.run(batch)
        together = output.wait()
        assert output.forward_passes == 1
        alone = [engine.run([item]).wait()[0] for item in batch]
    finally:
        engine.close()
    assert [t.text for t in together] == [a.text for a in alone]
    for t, a in zip(together, alone):
        assert t.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-3)
    # the heads act: the rows given one clip do not all read alike
    by_clip = {}
    for item, t in zip(batch, together):
        by_clip.setdefault(id(item.audio), set()).add(t.text)
    assert any(len(texts) > 1 for texts in by_clip.values())


def _fsdd_clips():
    from tests.server.models.whisper.helpers import FSDD, FSDD_ALT

    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    out = []
    for name in ["3_jackson_31.wav", "7_theo_35.wav", "5_nicolas_30.wav", "8_lucas_33.wav"]:
        data, rate = sf.read(str(folder / name), dtype="float32")
        out.append((resample(torch.from_numpy(data), rate), name))
    return out
