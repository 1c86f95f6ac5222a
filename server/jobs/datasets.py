"""Uploaded datasets: a zip of audio files plus a JSONL manifest, validated item by item.

An archive holds `manifest.jsonl` (one `{"audio": "<member name>", "text": "..."}` per
line) and the audio files it names. Every item goes through the server's one audio
reader (the same format, rate, channel and length rules as a transcription upload);
any refused item refuses the whole upload with one message listing the items, so a
dataset is either complete or absent. Accepted audio is re-written as 16 kHz PCM WAV
under the dataset's own folder with our own names (member names are never used as
paths), and a dataset is written to a temporary folder and renamed into place.

Cost is bounded before it is spent: archive bytes, member count, each member's bytes
and all members' bytes are read with limits (a zip's own size fields are not trusted),
so a zip bomb stops at the limit. Transcripts and audio are never logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import shutil
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf

from server.audio.reading import Audio, frames_to_hold, read_audio
from server.config import AudioSettings, JobSettings
from server.errors import (
    AudioDecodeError,
    AudioTooLong,
    InvalidDataset,
    PayloadTooLarge,
    TooManyJobs,
    UnknownFile,
)
from server.models.ctc.features import SAMPLE_RATE
from server.models.ctc.tokenizer import CharTokenizer

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TEXT_CHARS = 1000
MAX_ERRORS_SHOWN = 20
MAX_ENTRY_BYTES = 46 + 256  # a central directory entry: fixed part + a generous name/extra
FILE_PREFIX = "file-"


@dataclass(frozen=True)
class Dataset:
    id: str
    owner: str | None
    filename: str
    bytes: int
    items: int
    audio_seconds: float
    created_at: int

    def openai(self) -> dict:
        """OpenAI's File object, plus our counts."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": "fine-tune",
            "status": "processed",
            "items": self.items,
            "audio_seconds": round(self.audio_seconds, 3),
        }


@dataclass(frozen=True)
class Item:
    audio: Path
    text: str


def parse_archive(data: bytes, limits: JobSettings, audio: AudioSettings) -> list[tuple]:
    """The archive's items as (16 kHz waveform, text with whitespace squeezed), or
    InvalidDataset."""
    if len(data) > limits.max_dataset_bytes:
        raise PayloadTooLarge(
            f"dataset is {len(data)} bytes; the limit is {limits.max_dataset_bytes}"
        )
    most = 2 * limits.max_dataset_items + 16
    if _central_directory_bytes(data) > most * MAX_ENTRY_BYTES:
        # zipfile parses the whole directory up front (~500 B per entry, however small
        # the entry): 25 MB of empty members would cost ~300 MB before any count check
        raise InvalidDataset(f"the archive's central directory is too large (> {most} members)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise InvalidDataset("not a zip archive (or a damaged one)") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > most:
            raise InvalidDataset(f"the archive holds {len(infos)} members; too many")
        members = {i.filename: i for i in infos if not i.is_dir()}
        if MANIFEST not in members:
            raise InvalidDataset(f"the archive has no {MANIFEST} at its top level")
        budget = _Budget(4 * limits.max_dataset_bytes)
        rows = _manifest_rows(_read(archive, members[MANIFEST], MAX_MANIFEST_BYTES, budget))
        if not rows:
            raise InvalidDataset(f"{MANIFEST} lists no items")
        if len(rows) > limits.max_dataset_items:
            raise InvalidDataset(
                f"{MANIFEST} lists {len(rows)} items; the limit is {limits.max_dataset_items}"
            )
        items, errors, seconds = [], [], 0.0
        tokenizer = CharTokenizer()
        for line, row in rows:
            try:
                name, text = _row_fields(row)
                if name not in members:
                    raise InvalidDataset(f"no member {name!r} in the archive")
                if not tokenizer.normalize(text):
                    raise InvalidDataset("the transcript has no letters the model spells")
                # kept as written (digits, case, punctuation): each model kind forms its own
                # targets from it (CTC: letters only; Whisper: its BPE, server/jobs/model_kinds)
                text = " ".join(text.split())
                raw = _read(archive, members[name], audio.max_bytes, budget)
                decoded = _decode_within(raw, audio, limits.max_dataset_audio_s - seconds)
                seconds += decoded.seconds
                items.append((decoded.at_model_rate(), text))
            except PayloadTooLarge:
                raise
            except (InvalidDataset, AudioDecodeError, AudioTooLong) as exc:
                errors.append(f"line {line}: {exc.code}: {exc}")
        if errors:
            shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
            more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > 20 else ""
            raise InvalidDataset(f"{len(errors)} of {len(rows)} items refused: {shown}{more}")
        return items


def _decode_within(raw: bytes, audio: AudioSettings, left_s: float) -> Audio:
    """One item's audio, if it fits in what is left of the dataset's seconds: checked from
    its header before anything is decoded (a few KB of FLAC can claim hours of silence),
    and decoding stops there whatever the header claimed."""
    too_long = PayloadTooLarge(f"the dataset's audio passes its limit ({left_s:.0f} s were left)")
    held, rate = frames_to_hold(raw, audio)
    if rate and held / rate > left_s and held / rate < audio.max_duration_s:
        raise too_long  # its header claims more than is left
    bounded = audio.model_copy(
        update={"max_duration_s": max(min(audio.max_duration_s, left_s), 1e-3)}
    )
    try:
        return read_audio(raw, bounded)
    except AudioTooLong:
        if left_s < audio.max_duration_s:
            raise too_long from None
        raise


def _central_directory_bytes(data: bytes) -> int:
    """The central directory size the end record(s) declare, what zipfile will parse (the
    zip64 one too, where a locator precedes the end record); 0 if none is found."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0:
        return 0  # not a zip: zipfile says so
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    locator = end - 20
    if locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        record = int.from_bytes(data[locator + 8 : locator + 16], "little")
        zip64 = data[record : record + 56] if record < len(data) else b""
        if len(zip64) == 56 and zip64[:4] == b"PK\x06\x06":
            size = max(size, int.from_bytes(zip64[40:48], "little"))
        zip64 = data[locator - 56 : locator]  # where zipfile itself looks for it
        if len(zip64) == 56 and zip64[:4] == b"PK\x06\x06":
            size = max(size, int.from_bytes(zip64[40:48], "little"))
    return size


class _Budget:
    """Uncompressed bytes all members may inflate to, together."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise PayloadTooLarge("the archive inflates past its uncompressed-size limit")


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, budget: _Budget) -> bytes:
    """At most `limit` bytes of a member, counted as they inflate (headers can lie)."""
    try:
        with archive.open(info) as f:
            data = f.read(min(limit, max(0, budget.left)) + 1)  # never inflates past either
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError):
        # the library's own text is not for tenants (it may quote offsets or internals)
        raise InvalidDataset(
            f"member {info.filename!r} cannot be read: corrupt, encrypted or compressed with "
            "an unsupported method (store or deflate it)"
        ) from None
    except zipfile.LargeZipFile:
        raise InvalidDataset(f"member {info.filename!r} needs ZIP64, which is refused") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"member {info.filename!r} inflates past {limit} bytes")
    budget.take(len(data))
    return data


def _manifest_rows(raw: bytes) -> list[tuple[int, object]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDataset(f"{MANIFEST} is not UTF-8") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except (json.JSONDecodeError, RecursionError):
            raise InvalidDataset(f"{MANIFEST} line {number} is not JSON") from None
    return rows


def _row_fields(row: object) -> tuple[str, str]:
    if not isinstance(row, dict):
        raise InvalidDataset('a manifest line must be an object {"audio": ..., "text": ...}')
    name, text = row.get("audio"), row.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        raise InvalidDataset('"audio" and "text" must be strings')
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidDataset(f"the transcript is longer than {MAX_TEXT_CHARS} characters")
    return name, text


class DatasetStore:
    """Datasets on disk, one folder each: meta.json, manifest.jsonl, items/NNNNN.wav."""

    def __init__(self, root: Path, limits: JobSettings, audio: AudioSettings) -> None:
        self.root = root / "files"
        self.limits, self.audio = limits, audio  # the folder is made by the first upload

    def create(self, data: bytes, filename: str, owner: str | None) -> Dataset:
        self._check_count(owner)  # early: refuse before parsing
        items = parse_archive(data, self.limits, self.audio)
        dataset = Dataset(
            id=FILE_PREFIX + uuid.uuid4().hex[:24],
            owner=owner,
            filename=filename[:256],
            bytes=len(data),
            items=len(items),
            audio_seconds=sum(w.shape[0] for w, _ in items) / SAMPLE_RATE,
            created_at=int(time.time()),
        )
        tmp = self.root / f".tmp-{dataset.id}"
        (tmp / "items").mkdir(parents=True)  # the state dir too, on first use
        try:
            with (tmp / MANIFEST).open("w") as manifest:
                for i, (waveform, text) in enumerate(items):
                    name = f"items/{i:05d}.wav"
                    sf.write(tmp / name, waveform.numpy(), SAMPLE_RATE, subtype="PCM_16")
                    manifest.write(json.dumps({"audio": name, "text": text}) + "\n")
            (tmp / "meta.json").write_text(json.dumps(asdict(dataset)))
            with self._create_lock():  # count and rename as one: concurrent uploads
                self._check_count(owner)
                tmp.rename(self.root / dataset.id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info(
            "dataset %s: %d items, %.1f s", dataset.id, dataset.items, dataset.audio_seconds
        )
        return dataset

    def get(self, file_id: str, owner: str | None, admin: bool = False) -> Dataset:
        """The dataset if `owner` (or an admin) may see it; UnknownFile otherwise, alike."""
        dataset = self._load(file_id)
        if dataset is None or not (admin or dataset.owner == owner):
            raise UnknownFile(f"file {file_id!r} does not exist")
        return dataset

    def items(self, file_id: str) -> list[Item]:
        folder = self.root / file_id
        rows = [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]
        return [Item(folder / row["audio"], row["text"]) for row in rows]

    def list(self, owner: str | None, admin: bool = False) -> list[Dataset]:
        found = [d for p in self.root.glob(f"{FILE_PREFIX}*") if (d := self._load(p.name))]
        return sorted((d for d in found if admin or d.owner == owner), key=lambda d: -d.created_at)

    def delete(self, file_id: str, owner: str | None, admin: bool = False) -> None:
        self.get(file_id, owner, admin)
        trash = self.root / f".trash-{file_id}"
        try:
            (self.root / file_id).rename(trash)  # gone at once for readers; then removed
        except FileNotFoundError:  # a concurrent delete took it first
            raise UnknownFile(f"file {file_id!r} does not exist") from None
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("dataset %s deleted", file_id)

    def _check_count(self, owner: str | None) -> None:
        if owner is not None and self._count(owner) >= self.limits.max_datasets_per_tenant:
            raise TooManyJobs(
                f"tenant holds {self.limits.max_datasets_per_tenant} datasets, its limit; "
                "delete one first"
            )

    @contextlib.contextmanager
    def _create_lock(self) -> Iterator[None]:
        """Exclusive across threads and processes sharing the jobs root."""
        with (self.root / ".create.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _count(self, owner: str) -> int:
        return sum(1 for d in self.list(owner))

    def _load(self, file_id: str) -> Dataset | None:
        if not _valid_id(file_id, FILE_PREFIX):
            return None
        try:
            return Dataset(**json.loads((self.root / file_id / "meta.json").read_text()))
        except (FileNotFoundError, NotADirectoryError):
            return None


def _valid_id(value: str, prefix: str) -> bool:
    rest = value.removeprefix(prefix)
    return (
        value.startswith(prefix) and len(rest) == 24 and all(c in "0123456789abcdef" for c in rest)
    )
