"""Free Spoken Digit Dataset loader: each speaker is one task, `fsdd-<speaker>`.

Takes 0-29 train heads (and the multi-task controller stage); 30-39 are the
test split. The backbone never sees FSDD.
"""

from __future__ import annotations

import re
from pathlib import Path

from server.data.manifest import Utterance

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TAKES = range(0, 30)
TEST_TAKES = range(30, 40)
FSDD_PREFIX = "fsdd-"
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def load_fsdd(root: Path, takes: range, speakers: list[str] | None = None) -> list[Utterance]:
    utterances = []
    for path in sorted(Path(root).glob("*.wav")):
        match = _NAME.match(path.name)
        if not match:
            continue
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        if take in takes and (speakers is None or speaker in speakers):
            utterances.append(Utterance(str(path), DIGIT_WORDS[digit], FSDD_PREFIX + speaker))
    return utterances


def fsdd_speakers(root: Path) -> list[str]:
    return sorted({m[2] for p in Path(root).glob("*.wav") if (m := _NAME.match(p.name))})
