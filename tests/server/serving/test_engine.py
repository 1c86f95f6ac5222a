import copy
from concurrent.futures import Future

import pytest
import torch

from adapters_store.head_format import HeadRecord
from adapters_store.slot_pool import DeviceSlotPool
from server.audio.reading import Audio
from server.data.manifest import load_audio
from server.errors import HeadRejected, InferenceFailed
from server.models.checkpoint import head_spec
from server.models.ctc.features import SAMPLE_RATE
from server.models.ctc.inference import decode, forward_features
from server.models.ctc.recognizer import CtcRecognizer
from server.models.length_buckets import NEVER_SPLIT
from server.serving.engine import Engine, EngineInput


def _engine(default_model, overhead_frames, device: str = "cpu"):
    model, fp = default_model
    slots = DeviceSlotPool(head_spec(model, fp), 16, torch.device(device))
    recognizer = CtcRecognizer(copy.deepcopy(model).to(device))
    return Engine(recognizer, slots, forward_overhead_frames=overhead_frames)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _mixed_lengths_batch(default_store, fsdd_test) -> list[EngineInput]:
    """FSDD clips alone and joined in threes (0.3-3 s), each with its speaker's head."""
    batch = []
    for i, u in enumerate(fsdd_test[:12]):
        parts = [load_audio(v.audio) for v in fsdd_test[i : i + (3 if i % 2 else 1)]]
        batch.append(EngineInput(Audio(torch.cat(parts), SAMPLE_RATE), default_store.get(u.task)))
    return batch


@pytest.mark.parametrize("device", DEVICES)
def test_length_buckets_give_the_same_transcripts_as_one_padded_pass(
    default_model, default_store, fsdd_test, device
):
    batch = _mixed_lengths_batch(default_store, fsdd_test)
    one_pass = _engine(default_model, NEVER_SPLIT, device).run(batch)
    bucketed = _engine(default_model, 0, device).run(batch)
    assert one_pass.forward_passes == 1
    assert bucketed.forward_passes > 1
    assert [d.text for d in bucketed.wait()] == [d.text for d in one_pass.wait()]
    assert [d.words for d in bucketed.wait()] == [d.words for d in one_pass.wait()]
    assert any(d.text for d in one_pass.wait())


def test_the_engine_on_cpu_splits_a_mixed_batch_but_not_an_even_one(
    default_model, default_store, fsdd_test
):
    engine = _engine(default_model, None)
    mixed = _mixed_lengths_batch(default_store, fsdd_test)
    assert engine.run(mixed).forward_passes > 1
    even = [EngineInput(Audio(torch.randn(SAMPLE_RATE) * 0.1, SAMPLE_RATE), None)] * 8
    assert engine.run(even).forward_passes == 1


def test_an_item_that_cannot_be_featurized_fails_alone(default_model, default_store, fsdd_test):
    engine = _engine(default_model, None)
    batch = _mixed_lengths_batch(default_store, fsdd_test)[:4]
    too_short = EngineInput(Audio(torch.zeros(engine.min_samples - 1), SAMPLE_RATE), None, "r-1")
    alone = engine.run(batch).wait()
    mixed = engine.run(batch[:2] + [too_short] + batch[2:])
    results = mixed.wait()
    assert isinstance(results[2], InferenceFailed)
    assert mixed.isolated_failures == 1
    others = results[:2] + results[3:]
    assert [d.text for d in others] == [d.text for d in alone]


def test_a_fused_pass_that_raises_is_split_until_only_the_culprit_fails(
    default_model, default_store, fsdd_test
):
    engine = _engine(default_model, NEVER_SPLIT)
    batch = _mixed_lengths_batch(default_store, fsdd_test)[:7]
    good = batch[0].head
    wrong_shape = good.with_meta(task_id="wrong-shape", version=99)
    culprit = EngineInput(
        batch[0].audio, HeadRecord(wrong_shape.meta, {"V": good.tensors["V"].repeat(2, 1)}), "r-2"
    )
    alone = engine.run(batch).wait()
    mixed = engine.run(batch[:5] + [culprit] + batch[5:])
    results = mixed.wait()
    assert isinstance(results[5], HeadRejected)
    assert mixed.isolated_failures == 1
    assert 1 < mixed.forward_passes <= 1 + 2 * 3  # the split costs at most 2 log2(B) passes
    others = results[:5] + results[6:]
    assert [d.text for d in others] == [d.text for d in alone]


def test_a_vocabulary_decode_runs_off_the_engine_thread_and_gives_the_inline_result(
    default_model, default_store, fsdd_test
):
    engine = _engine(default_model, None)
    batch = _mixed_lengths_batch(default_store, fsdd_test)[:4]
    assert all(item.head.meta.vocabulary for item in batch)  # the shipped FSDD heads have one
    output = engine.run(batch)
    assert all(isinstance(r, Future) for r in output.results)
    logits, lengths = forward_features(
        default_model[0], [engine.featurize(i.audio) for i in batch], [i.head for i in batch]
    )
    inline = decode(logits, lengths, [i.head.meta.vocabulary for i in batch], engine.frame_seconds)
    assert [d.text for d in output.wait()] == [d.text for d in inline]


def test_on_a_non_cpu_device_every_step_before_decoding_runs_where_the_model_lives(
    default_model, default_store, fsdd_test
):
    """The model on `meta` checks every device boundary without a GPU: features, slot pool,
    fused forward; only decoding (which reads values) can fail there, and must."""
    engine = _engine(default_model, None, "meta")
    batch = _mixed_lengths_batch(default_store, fsdd_test)[:4]
    batch.append(EngineInput(Audio(torch.randn(8000) * 0.1, 8000), None, "base-at-8k"))
    results = engine.run(batch).wait()
    assert [r.stage for r in results] == ["decode"] * len(batch), results
    with pytest.raises(InferenceFailed) as warm_up:
        engine.warm_up()
    assert warm_up.value.stage == "decode"
