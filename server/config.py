"""All configuration, read once from environment variables prefixed `HRA_`.

Nested groups use a double underscore: `HRA_BATCH__MAX_BATCH_SIZE=16`.
Every knob has a default that serves the embedded model on a CPU.
"""

from __future__ import annotations

import math
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class ApiKey(BaseModel):
    """One API key (HRA_API_KEYS / HRA_KEYS_FILE): server/auth.py judges callers by them."""

    key: SecretStr
    tenant: str | None = None  # None with admin=True: an operator key
    admin: bool = False


class StoreKind(StrEnum):
    DISK = "disk"
    REDIS = "redis"


class BatchSettings(BaseModel):
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    """Most utterances in one fused forward pass."""
    max_wait_ms: float = Field(default=10.0, ge=0, le=10_000)
    """How long the first request of a batch may wait for company, in milliseconds; only
    while requests arrive at least this often (a lone client never waits)."""
    max_queue: int = Field(default=256, ge=1)
    """Admitted requests waiting for a batch; beyond this, 503 with Retry-After."""
    max_queued_samples: int = Field(default=100_000_000, ge=1)
    """Decoded audio samples (float32, at their own rate) waiting for a batch, all requests
    together: 400 MB. A request that would pass it gets 503 with Retry-After (waiting audio
    is bounded in bytes, not only in count: 15 s at 384 kHz is 23 MB)."""
    max_batch_audio_s: float = Field(default=240.0, gt=0)
    """Padded audio seconds per batch, bounding memory for long utterances."""
    max_window_batch_audio_s: float = Field(default=30.0, gt=0)
    """Padded audio seconds per batch of long files' windows (a window longer than this
    still runs, alone). A short request that arrives while windows run waits for at most
    one such batch, so long files cannot hold the engine in long stretches."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline from admission to result; past it the request fails with 504."""


class QueueShareSettings(BaseModel):
    """One tenant's share of the batcher's queue (HRA_QUEUE_SHARE__...)."""

    tenant_fraction: float = Field(default=0.25, gt=0, le=1)
    """Most of `max_queue` one tenant's requests may fill, counting those waiting for a batch
    and those waiting for their vocabulary decode (rounded up, at least 1); past it that
    tenant alone gets 503 `overloaded`, so one tenant's flood cannot get every other tenant
    refused. Admin and open-access callers are not counted against a share."""

    def per_tenant(self, max_queue: int) -> int:
        return max(1, math.ceil(self.tenant_fraction * max_queue))


class FairShareSettings(BaseModel):
    """Each tenant's share of the engine's time (HRA_FAIR_SHARE__...): batches are filled
    from the tenant that has used the least engine time, weighted, first."""

    weights: dict[str, float] = {}
    """Tenant -> weight (JSON, e.g. `{"acme": 2}`): a tenant of weight 2 gets twice the
    engine time of a tenant of weight 1 when both want more. Unlisted tenants, and admin
    or open-access work, get `default_weight`."""
    default_weight: float = Field(default=1.0, gt=0, le=1000)
    """The weight of every tenant not listed in `weights`."""
    decode_step_cost_s: float = Field(default=0.05, ge=0, le=10)
    """What one decoder step (Whisper: a token of one row, every fallback attempt counted)
    weighs against one second of encoded audio when a batch's engine time is split among
    its items."""
    max_accounts: int = Field(default=10_000, ge=1)
    """Tenants whose accounts are kept; past it, tenants with nothing waiting are dropped
    (a returning tenant starts at the current virtual time either way)."""


class CacheSettings(BaseModel):
    device_slots: int = Field(default=64, ge=1)
    """Heads resident in the device slot pool (per head type)."""
    host_heads: int = Field(default=1024, ge=1)
    """Heads kept decoded in host memory."""


class HeadSettings(BaseModel):
    """Head families' ranks and the host head cache's byte bound (HRA_HEADS__...)."""

    max_ffn_rank: int = Field(default=64, ge=1, le=4096)
    """Largest FFN head rank (hidden size) accepted at upload; the device slot pool
    sizes its FFN slots to it, so every accepted head fits a slot."""
    max_residual_rank: int = Field(default=64, ge=1, le=4096)
    """Largest residual adapter rank (bottleneck) accepted at upload; sizes the
    residual slots (per slot: 2 x layers x rank x hidden floats)."""
    host_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024, le=1 << 40)
    """Bytes of decoded head tensors the host cache keeps, in bytes (LRU beyond it;
    HRA_CACHE__HOST_HEADS bounds the count as well)."""

    @property
    def max_ranks(self) -> dict[str, int]:
        """Head type -> largest rank, as HeadSpec carries it."""
        return {"ffn": self.max_ffn_rank, "residual": self.max_residual_rank}


class AudioSettings(BaseModel):
    max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """Largest upload accepted, in bytes (OpenAI's own limit is 25 MB)."""
    max_duration_s: float = Field(default=7200.0, gt=0)
    """Longest audio accepted, in seconds (2 h). Audio longer than one long-form window
    (HRA_LONGFORM__WINDOW_S; Whisper: __WHISPER_WINDOW_S) is cut into windows and stitched
    (server/longform/)."""
    max_channels: int = Field(default=8, ge=1, le=255)
    """Most channels in one file (8 = 7.1 surround; speech is 1 or 2). Every channel is
    decoded before the downmix, so this bounds decoding work per second of audio."""
    max_decoded_samples: int | None = Field(default=None, ge=16_000)
    """Most samples decoded from one file, frames x channels, checked from the header before
    decoding and again while decoding. Unset: 60 s x 48 kHz x 2 channels, or for longer
    limits max_duration_s x 16 kHz x 2 channels if that is more (230,400,000 for 2 h: 2 h
    of 16 kHz stereo or 32 kHz mono; 921 MB as mono float32 at most)."""
    max_vocabulary_cost: int = Field(default=3_000_000, ge=10_000, le=1_000_000_000)
    """Most vocabulary-decoding work per utterance, in word-loop states x model frames
    (one byte each; the cost per state-frame: load_tests/bench_vocabulary.py, docs/api.md).
    Audio too long for its task's vocabulary gets 413."""

    @property
    def decoded_samples_limit(self) -> int:
        if self.max_decoded_samples is not None:
            return self.max_decoded_samples
        return int(max(min(self.max_duration_s, 60) * 48_000, self.max_duration_s * 16_000) * 2)


class LongformSettings(BaseModel):
    """Long audio: windows, overlap, fairness, memory (HRA_LONGFORM__...; server/longform/)."""

    window_s: float = Field(default=10.0, gt=2, le=600)
    """CTC models: longest window the model sees, overlap included; longer audio is cut into
    windows (Whisper model directories use the whisper_* knobs below)."""
    margin_s: float = Field(default=1.0, ge=0, le=10)
    """Overlap on each side of a cut: a word reaching less than this past a cut is whole in
    the window that keeps it."""
    search_s: float = Field(default=2.0, ge=0, le=60)
    """How far before the longest core a cut may move to land in the quietest frame."""
    min_pause_s: float = Field(default=0.25, ge=0.03, le=10)
    """A stretch this long without speech is a cut point (at its centre)."""
    speech_db: float = Field(default=15.0, ge=1, le=60)
    """A 10 ms hop is speech when its energy is this far above the file's noise floor."""
    min_speech_s: float = Field(default=0.1, ge=0.03, le=10)
    """A stretch between pauses gets a window only if it holds this much sustained speech
    (10 ms hops in runs of at least 30 ms): periodic clicks hold none."""
    min_speech_fraction: float = Field(default=0.2, ge=0, le=1)
    """... and that speech is at least this fraction of the stretch."""
    min_contrast_db: float = Field(default=6.0, ge=0, le=60)
    """... and its hops' levels spread at least this much (10th to 90th percentile, dB):
    steady noise, a hum or a tone does not rise and fall as speech does (0: any)."""
    max_windows_per_s: float = Field(default=2.0, gt=0, le=100)
    """Most windows a long file may be cut into per second of its audio (a pause is
    0.25 s, a word longer: speech makes fewer); past it the request gets 413
    `too_many_windows` before any window runs."""
    max_windows: int = Field(default=8192, ge=1, le=1_000_000)
    """Most windows one long file may be cut into, whatever its length (413 past it);
    2 h of Whisper takes at most ~520 (28 s cores), of CTC digits ~1 per second."""
    join_s: float = Field(default=0.0, ge=0, le=600)
    """Stretches between pauses are joined into one window while they fit in this many
    seconds; 0 = each its own window (the embedded digit model was trained on short
    utterances and loses words given several at once: docs/long-audio.md)."""
    whisper_window_s: float = Field(default=30.0, gt=6, le=30)
    """Whisper model directories: longest window, overlap included (one 30 s pass each);
    longer audio is cut into windows of this (the CTC knobs above are for CTC models)."""
    whisper_margin_s: float = Field(default=1.0, ge=0, le=3)
    """Whisper: overlap on each side of a forced cut (speech with no pause); windows are
    cores of at most whisper_window_s - 2 x this (28 s by default)."""
    whisper_join_s: float = Field(default=28.0, ge=0, le=30)
    """Whisper: stretches between pauses are joined into one window while they fit in this
    many seconds (at most the core): Whisper reads context, and every pass costs its 30 s
    window's encoder however little speech is in it (the "pad" window)."""
    whisper_tail_s: float = Field(default=1.5, ge=0, le=30)
    """Whisper: a window whose words end more than this before its end (Whisper ended its
    text early) is followed by a window over the rest (server/longform/tails.py); 0: never."""
    whisper_tails: int = Field(default=2, ge=0, le=8)
    """Whisper: most such tails after one window (a window costs at most 1 + this passes)."""
    windows_in_flight: int = Field(default=2, ge=1, le=64)
    """Windows of one request waiting or running at once (also its most per batch): a long
    file cannot flood the queue, and short requests arriving meanwhile go first."""
    window_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of each window, from its submission (504 past it)."""
    max_held_samples: int = Field(default=240_000_000, ge=100_000)
    """Decoded samples (mono float32, 4 bytes each) all long transcriptions (audio longer
    than one window) in progress may hold together (960 MB); a request whose header would
    pass it gets 503 `overloaded`."""
    max_held_samples_per_tenant: int = Field(default=120_000_000, ge=100_000)
    """The most of `max_held_samples` one tenant's long transcriptions may hold (480 MB:
    one 2 h file at 16 kHz); admin keys count only in the total."""


class HttpSettings(BaseModel):
    """The HTTP edge: who may read /metrics, and how long and how many clients may hold us."""

    metrics_key: SecretStr | None = None
    """A key that opens /metrics only (Prometheus sends it as a bearer token). With API keys
    configured, /metrics answers this key or an admin key; in open-access mode it is open."""
    body_read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Most seconds to receive a whole request body, from the request's start; past it the
    request gets 408 `request_timeout` (a client trickling a body cannot hold a worker)."""
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    """Concurrent connections and requests `hra serve` accepts (uvicorn limit_concurrency);
    beyond it new requests get 503."""
    keep_alive_timeout_s: int = Field(default=5, ge=1, le=600)
    """Seconds an idle keep-alive connection stays open (uvicorn timeout_keep_alive)."""
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    """Largest request head (request line + headers) `hra serve` accepts, in bytes
    (h11 max incomplete event size); larger gets the connection closed."""


class QuotaSettings(BaseModel):
    """Per-tenant limits on stored heads; admin keys are not limited (429 quota_exceeded)."""

    max_tasks_per_tenant: int = Field(default=1000, ge=1, le=10_000_000)
    """Most tasks one tenant may own."""
    max_versions_per_task: int = Field(default=100, ge=1, le=1_000_000)
    """Most versions a tenant's task may hold; DELETE the task to start again."""
    max_bytes_per_tenant: int = Field(default=1 << 30, ge=1024, le=1 << 50)
    """Most bytes of head files (every version of every task) one tenant may store."""


class DiscoverySettings(BaseModel):
    """GET /v1/models, the list of tasks a caller may use (HRA_DISCOVERY__...)."""

    max_models_listed: int = Field(default=1000, ge=1, le=100_000)
    """Most entries one GET /v1/models answers ("base" included); more are reached with
    its `offset` and `limit` query parameters (the list says `has_more`)."""


class WhisperSettings(BaseModel):
    """The Whisper backbone's knobs (HRA_WHISPER__...); see server/models/whisper/."""

    window: Literal["pad", "cut"] = "pad"
    """Encoder input: "pad" puts every clip in Whisper's 30 s window (what it was trained
    on); "cut" cuts the batch to its longest clip plus `cut_margin_s` of silence per clip."""
    cut_margin_s: float = Field(default=8.0, ge=0.0, le=30.0)
    """Seconds of silence after each clip in the "cut" window; below ~8 s greedy Whisper
    loops on short clips (docs/models.md)."""
    max_tokens: int = Field(default=224, ge=1, le=446)
    """Most tokens decoded per utterance (Whisper's own limit: half its 448-token context)."""
    temperature_fallback: bool = True
    """openai-whisper's fallback: a decode that loops (compression ratio > 2.4) or is
    unlikely (avg_logprob < -1, not silence) is redone at temperature +0.2, ... 1.0 (at
    most 6 decodes of a row, each bounded by max_tokens). False: one decode per request,
    at its temperature."""
    tokens_per_s: float = Field(default=12.0, gt=0, le=100)
    """Most tokens one decode of a clip may emit per second of its audio (at least
    `min_tokens`, at most `max_tokens`): speech takes 2.5-6/s, timestamps included
    (measured on JFK and FSDD digits); a decode that loops stops here."""
    min_tokens: int = Field(default=32, ge=1, le=446)
    """Tokens one decode may emit whatever the clip's length (a short clip's floor)."""
    max_attempts: int = Field(default=6, ge=1, le=6)
    """Most decodes of one clip with the temperature fallback (6: openai-whisper's whole
    schedule 0, 0.2, ... 1.0; 1: no fallback)."""
    decode_budget_per_s: float = Field(default=40.0, gt=0, le=1000)
    """Tokens all decodes of one clip (every fallback attempt; each window of a long file
    has its own) may emit together, per second of its audio (at least `min_budget`); a
    clip that needs more fails alone with 422 `decode_budget_exceeded`."""
    min_budget: int = Field(default=384, ge=1, le=100_000)
    """The decode budget of a clip whatever its length (a short clip's floor: under 5.3 s,
    6 attempts of at most 12 tokens/s fit in 384, so only longer clips can exceed it)."""
    max_prompt_tokens: int = Field(default=223, ge=0, le=223)
    """A prompt's last this many tokens are kept, the rest dropped, as openai-whisper does
    with its 223 (0: prompts are ignored). Prompts are also at most 4,000 characters (400)."""
    cache_dir: Path | None = None
    """Where converted weights are cached as safetensors keyed by model.bin's sha256;
    default <work_dir>/whisper."""


class StreamingSettings(BaseModel):
    """Live streaming over WebSocket, /v1/realtime (HRA_STREAMING__...); server/live/."""

    max_streams: int = Field(default=256, ge=0, le=100_000)
    """Live streams open at once, all tenants together; past it `too_many_streams`."""
    max_streams_per_tenant: int = Field(default=32, ge=0, le=100_000)
    """Live streams one tenant may hold open (admin and open-access callers: only the total)."""
    partial_hop_ms: int = Field(default=320, ge=40, le=10_000)
    """New speech between two partial hypotheses, in ms: each partial re-runs the utterance so
    far (at most `max_utterance_s`) as one batcher work item."""
    silence_ms: int = Field(default=480, ge=100, le=10_000)
    """Silence that ends an utterance (endpointing), in ms, unless the session sets its own."""
    prefix_padding_ms: int = Field(default=100, ge=0, le=2_000)
    """Audio kept from before the detected start of speech, in ms."""
    suffix_padding_ms: int = Field(default=100, ge=0, le=2_000)
    """Audio kept past the last speech frame, in ms: the rest of the endpointing silence is
    not decoded (the shipped backbone misreads long silences around a clip: docs/realtime.md)."""
    threshold_db: float = Field(default=-50.0, ge=-120.0, le=0.0)
    """Energy VAD: a 20 ms frame is speech only if louder than this (dBFS RMS) ..."""
    margin_db: float = Field(default=10.0, ge=0.0, le=60.0)
    """... and this many dB above the background (the quietest recent frames, tracked)."""
    partial_audio_per_s: float = Field(default=4.0, ge=0.5, le=100.0)
    """Most seconds of audio partial hypotheses re-decode per second of stream: past
    `partial_hop_ms` x this of utterance, the hop grows with it (one partial per quarter
    of the utterance so far, by default), so a long utterance costs what a short one does
    per second; finals are unaffected."""
    steady_noise_s: float = Field(default=4.0, ge=0.5, le=60.0)
    """Energy VAD: a level that holds steady this long (within `steady_noise_db`, 10th to
    90th percentile) is background, however low the tracked background was: constant
    noise that starts after silence is not heard as endless speech."""
    steady_noise_db: float = Field(default=6.0, ge=0.0, le=60.0)
    """... the spread under which a level is steady (speech rises and falls by more)."""
    max_utterance_s: float = Field(default=12.0, ge=1.0, le=60.0)
    """Longest utterance: at this length it is ended (forced endpoint), bounding the cost of
    every partial and final."""
    idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """A stream that sends nothing for this long is closed (`stream_idle_timeout`)."""
    send_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """A client that does not read an event within this long is closed (`slow_consumer`)."""
    max_message_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)
    """Largest client message (1 MiB: 32 s of 16 kHz PCM16 in base64); larger: error event."""
    max_ahead_s: float = Field(default=10.0, ge=0.5, le=600)
    """How far a client's audio may run ahead of the wall clock since the stream opened, in
    seconds: a live stream is real time, so one stream's cost is bounded by its duration."""
    max_pending_finals: int = Field(default=4, ge=1, le=64)
    """Ended utterances waiting for their final transcript; past it `stream_overloaded`."""


class JobSettings(BaseModel):
    """Self-service training: uploaded datasets and fine-tuning jobs (HRA_JOBS__...)."""

    queue: Literal["local", "rq"] = "local"
    """Where jobs run: "local", a worker child process of this server (no Redis needed);
    "rq", RQ workers (`rq worker`, possibly on GPU machines) fed through the store's Redis
    (HRA_STORE=redis). Both run the same job function, server/jobs/runner.py."""
    root: Path | None = None
    """Datasets, job records and events; default <state_dir>/jobs. RQ workers must see the
    same folder (a shared volume)."""
    local_workers: int = Field(default=1, ge=1, le=64)
    """Jobs the local queue runs at once (each in its own child process)."""
    torch_threads: int = Field(default=1, ge=1, le=256)
    """Intra-op threads of a training job: 1 keeps serving latency on a shared CPU."""
    nice: int = Field(default=19, ge=0, le=19)
    """Niceness a training job's process runs at, absolute (not added to the server's): the
    OS runs serving first on a shared CPU whatever the server's own niceness. A server
    already nicer than this leaves its jobs at its own niceness (never raised above it);
    0: the job keeps the niceness it inherits."""
    cgroup: Path | None = None
    """A cgroup v2 folder (prepared and delegated by the operator, e.g. a systemd slice) a
    training worker moves itself into, setting its `cpu.weight` to `cpu_weight`: CPU
    shares on top of niceness. Unset, or not writable: niceness only (logged)."""
    cpu_weight: int = Field(default=1, ge=1, le=10_000)
    """cgroup v2 `cpu.weight` written to `cgroup` (1..10000; the kernel's default is 100)."""
    max_dataset_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """Largest dataset archive (zip) accepted, in bytes."""
    max_dataset_items: int = Field(default=2000, ge=1, le=1_000_000)
    """Most utterances in one dataset."""
    max_dataset_audio_s: float = Field(default=3600.0, gt=0)
    """Most seconds of audio in one dataset, all items together."""
    max_feature_bytes: int = Field(default=1024**3, ge=1)
    """Most bytes a job's features may take in memory, estimated at creation from its
    datasets' seconds of audio x augmented copies (`speeds`, `tempos`) x the model kind's
    feature bytes per second; past it 413 `job_too_large`, before anything runs."""
    max_datasets_per_tenant: int = Field(default=20, ge=1)
    """Most datasets one tenant may keep (DELETE frees one)."""
    max_concurrent_jobs_per_tenant: int = Field(default=1, ge=1)
    """Jobs of one tenant queued or running at once; more get 429 `too_many_jobs`."""
    max_job_records_per_tenant: int = Field(default=200, ge=1)
    """Job records (with their events) one tenant keeps: creating one past it removes the
    tenant's oldest finished ones, so history cannot grow without bound."""
    max_event_streams_per_tenant: int = Field(default=4, ge=1, le=1000)
    """Job event streams (`/events?stream=true`) one tenant may hold open; more: 429."""
    max_train_seconds: float = Field(default=900.0, gt=0)
    """Wall time a job may train; past it the job fails (`time_limit`), no version written."""
    max_steps: int = Field(default=2000, ge=1)
    """Most training steps a job may ask for."""
    default_steps: int = Field(default=150, ge=1)
    """Training steps when a job names none."""
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the training dataset held out for evaluation when no validation_file."""
    heartbeat_timeout_s: float = Field(default=300.0, gt=0)
    """A running RQ job silent this long (no step, no heartbeat) is marked failed at start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HRA_", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    """Interface `make run` binds."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port `make run` listens on."""

    model_dir: Path = REPO_ROOT / "models" / "default"
    """Folder with model.safetensors (backbone + controller) and heads/ (default store)."""
    device: str = "auto"
    """torch device for the engine: auto (cuda if available), cpu, cuda, cuda:1 ..."""
    torch_threads: int = Field(default=0, ge=0)
    """Intra-op threads for torch; 0 keeps torch's default (one per core)."""
    forward_overhead_frames: int | None = Field(default=None, ge=0)
    """What one more forward pass costs, in padded 10 ms feature frames: the engine splits a
    batch into length buckets where that saves more padding. Unset: 500 on CPU (measured),
    one pass per batch on a GPU (not measured yet). A huge value never splits."""
    allocator: Literal["auto", "jemalloc", "system"] = "auto"
    """malloc of `hra serve`: jemalloc keeps RSS flat under load; auto uses it when installed."""

    store: StoreKind = StoreKind.DISK
    """Where heads live: disk (embedded default) or redis (shared by replicas)."""
    disk_store_path: Path | None = None
    """DiskStore folder, used as is (an override); default <state_dir>/<model dir name>/heads,
    seeded on first start with a copy of <model_dir>/heads."""
    state_dir: Path = REPO_ROOT / "var"
    """Runtime state (the disk store of uploaded heads), outside the tracked tree: the model
    directory's heads/ are a read-only seed, never written. Gitignored."""
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """Redis connection URL (may hold a password, hence secret)."""
    redis_prefix: str = "hra"
    """Key prefix, so several deployments can share one Redis."""

    batch: BatchSettings = BatchSettings()
    queue_share: QueueShareSettings = QueueShareSettings()
    fair_share: FairShareSettings = FairShareSettings()
    cache: CacheSettings = CacheSettings()
    audio: AudioSettings = AudioSettings()
    http: HttpSettings = HttpSettings()
    heads: HeadSettings = HeadSettings()
    quotas: QuotaSettings = QuotaSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    whisper: WhisperSettings = WhisperSettings()
    longform: LongformSettings = LongformSettings()
    streaming: StreamingSettings = StreamingSettings()
    jobs: JobSettings = JobSettings()

    open_access: bool = False
    """Serve without API keys (everyone is admin). Only for local use; logged loudly."""
    api_keys: list[ApiKey] = []
    """Keys as JSON: [{"key": "...", "tenant": "acme"}, {"key": "...", "admin": true}]."""
    keys_file: Path | None = None
    """A JSON file in the same shape as HRA_API_KEYS, read at start-up."""

    busiest_tasks_tracked: int = Field(default=20, ge=0)
    """Tasks with their own metric label; all others count under `other`."""

    fsdd_root: Path = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
    """FSDD recordings, for training and evaluation only."""
    work_dir: Path = REPO_ROOT / "build"
    """Generated data and resumable training checkpoints (not committed)."""
    backbone_precision: Literal["float32", "int8", "bfloat16"] = "float32"
    """CPU only, CTC models: the frozen backbone's layers in int8 (dynamic quantization) or
    bfloat16 autocast; controller and heads stay float32 (server/models/precision.py)."""

    @property
    def heads_path(self) -> Path:
        """The DiskStore root: HRA_DISK_STORE_PATH, else one folder per model in the state
        dir (models have different fingerprints, so their heads never share a store)."""
        return self.disk_store_path or self.state_dir / self.model_dir.name / "heads"

    @property
    def jobs_root(self) -> Path:
        """Datasets and fine-tuning jobs: HRA_JOBS__ROOT, else <state_dir>/jobs."""
        return self.jobs.root or self.state_dir / "jobs"

    @property
    def seed_heads_path(self) -> Path:
        """The model directory's shipped heads: read-only, copied into a store to seed it."""
        return self.model_dir / "heads"


@lru_cache
def get_settings() -> Settings:
    return Settings()
