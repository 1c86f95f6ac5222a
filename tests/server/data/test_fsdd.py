"""FSDD loader: speaker = task, takes 0-29 train and 30-39 test, never mixed."""

from __future__ import annotations

from server.data.fsdd import TEST_TAKES, TRAIN_TAKES, fsdd_speakers, load_fsdd


def test_splits_are_disjoint_and_cover_every_speaker_and_digit(fsdd_root):
    train = load_fsdd(fsdd_root, TRAIN_TAKES)
    test = load_fsdd(fsdd_root, TEST_TAKES)
    speakers = fsdd_speakers(fsdd_root)
    assert len(speakers) == 6
    assert len(train) == 6 * 10 * 30 and len(test) == 6 * 10 * 10
    assert not {u.audio for u in train} & {u.audio for u in test}
    assert {u.task for u in test} == {f"fsdd-{s}" for s in speakers}
    assert {u.text for u in test} == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }


def test_one_speaker_can_be_selected(fsdd_root):
    rows = load_fsdd(fsdd_root, TEST_TAKES, speakers=["george"])
    assert len(rows) == 100 and {r.task for r in rows} == {"fsdd-george"}
