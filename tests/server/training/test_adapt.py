"""`hra adapt-backbone` end to end, for each format: a tiny wav2vec2 CTC model written by
transformers itself, and a tiny NeMo Conformer-CTC written by NeMo itself (committed:
tests/server/models/nemo/nemo_reference.py) -> controller + two heads trained on espeak-ng speech ->
served over HTTP, mixed batches equal solo runs.

With random weights WER means nothing: what is asserted is that the HF logits are reproduced,
that training lowers the CTC loss, that the directory serves and that heads mix invariantly.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters_store.disk_store import DiskStore
from adapters_store.errors import InvalidTaskId
from adapters_store.head_batch import HeadBatch
from server.cli import main
from server.config import Settings
from server.data.manifest import Utterance, load_audio, save_audio, write_manifest
from server.data.synthetic import speak
from server.errors import AudioDecodeError
from server.models.checkpoint import load_model
from server.models.ctc.features import pad_features
from server.models.hf.ctc import HfCtcBackbone
from server.models.nemo.ctc import NemoCtcBackbone
from server.training.adapt import AdaptConfig, adapt_backbone, controller_dim_for
from tests.helpers import running_client
from tests.server.models.nemo.nemo_reference import DATA

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5} | {
    c: 6 + i for i, c in enumerate(LETTERS)
}
TEXTS = ["hello there", "open the door", "call me later", "red and blue", "it is cold"]
VOICES = {"alice": "en-us+f2", "bob": "en-gb+m3"}  # two tasks: two voices


def write_tiny_wav2vec2(folder: Path):
    """transformers' own save_pretrained of a random tiny Wav2Vec2ForCTC with a char vocab
    (layer-norm front end: padding cannot leak between utterances)."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=len(VOCAB),
        pad_token_id=0,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    model = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.bias[VOCAB["A"] :] += 3.0  # letters outscore blank: transcripts non-empty
    model.save_pretrained(folder)
    (folder / "v.json").write_text(json.dumps(VOCAB))
    transformers.Wav2Vec2CTCTokenizer(str(folder / "v.json")).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return model


def write_manifests(root: Path) -> list[Path]:
    paths = []
    for task, voice in VOICES.items():
        rows = []
        for i, text in enumerate(TEXTS):
            audio = root / "audio" / f"{task}-{i}.wav"
            save_audio(audio, speak(text, voice, 170, 50), 16_000)
            rows.append(Utterance(str(audio), text, task))
        write_manifest(root / f"{task}.jsonl", rows)
        paths.append(root / f"{task}.jsonl")
    return paths


def spelling_nemo(path: Path) -> Path:
    """The NeMo-written tiny Conformer-CTC, its decoder's letters raised over blank (so random
    weights transcribe something); the archive is re-tarred member for member."""
    with tarfile.open(DATA / "conformer.nemo") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    name = next(n for n in members if n.endswith("model_weights.ckpt"))
    state = torch.load(io.BytesIO(members[name]), weights_only=True)
    state["decoder.decoder_layers.0.bias"][2:-1] += 3.0
    buffer = io.BytesIO()
    torch.save(state, buffer)
    members[name] = buffer.getvalue()
    with tarfile.open(path, "w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The espeak-ng sentences and their manifests, made once for both formats."""
    root = tmp_path_factory.mktemp("speech")
    return root, write_manifests(root)


@pytest.fixture(scope="module", params=["hf", "nemo"])
def adapted(request, tmp_path_factory, speech):
    """The command, run once per format: (root, HF model or None, out dir, its adapt.json,
    manifests)."""
    root = tmp_path_factory.mktemp(f"adapt-{request.param}")
    if request.param == "hf":
        hf_model, checkpoint = write_tiny_wav2vec2(root / "hf"), root / "hf"
    else:
        hf_model, checkpoint = None, spelling_nemo(root / "tiny.nemo")
    audio_root, manifests = speech
    (root / "audio").symlink_to(audio_root / "audio")
    argv = ["--work-dir", str(root / "work"), "adapt-backbone", "--checkpoint", str(checkpoint)]
    argv += ["--manifests", *map(str, manifests), "--out", str(root / "mine")]
    assert main(argv + ["--steps", "30", "--lr", "1e-2"]) == 0
    summary = json.loads((root / "mine" / "adapt.json").read_text())
    return root, hf_model, root / "mine", summary, manifests


def test_adapted_dir_holds_the_backbone_a_trained_controller_and_two_heads(adapted):
    root, hf_model, out, summary, _ = adapted
    assert sorted(p.name for p in out.iterdir()) == ["adapt.json", "heads", "model.safetensors"]
    model, fp = load_model(out / "model.safetensors")
    kind = HfCtcBackbone if hf_model else NemoCtcBackbone
    assert isinstance(model.backbone, kind) and fp == summary["fingerprint"]
    assert model.controller.dim == summary["controller_dim"] == controller_dim_for(32) == 16
    store = DiskStore(out / "heads")
    heads = {t: store.get(t) for t in VOICES}
    assert all(h.meta.fingerprint == fp and h.meta.head_type == "linear" for h in heads.values())
    assert all(float(h.tensors["V"].abs().sum()) > 0 for h in heads.values())  # trained
    assert summary["loss_after"] < 0.97 * summary["loss_before"]  # same data, fixed batches
    if hf_model is None:  # NeMo: the frozen backbone is still the archive's, bit for bit
        original = NemoCtcBackbone.from_file(root / "tiny.nemo").state_dict()
        assert all(torch.equal(v, original[k]) for k, v in model.backbone.state_dict().items())
        return
    # The backbone inside model.safetensors still reproduces the HF forward (1e-4).
    wave = load_audio(root / "audio" / "alice-0.wav")
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    inputs = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values
    feats = model.backbone.featurize(wave)
    with torch.no_grad():
        expected = hf_model(inputs).logits[0]
        x, _ = model.backbone.embed(feats[None], torch.tensor([feats.shape[0]]))
        mask = torch.zeros(1, x.shape[1], dtype=torch.bool)
        for i in range(model.backbone.num_layers):
            x = model.backbone.layer(i, x, mask)
        torch.testing.assert_close(model.backbone.hf_logits(x)[0], expected, atol=1e-4, rtol=0)


def test_mixed_batch_of_the_adapted_heads_equals_each_utterance_alone(adapted):
    root, _, out, _, _ = adapted
    model, _ = load_model(out / "model.safetensors")
    store = DiskStore(out / "heads")
    clips = [root / "audio" / f"{t}-{i}.wav" for t, i in (("alice", 0), ("bob", 1), ("bob", 4))]
    feats = [model.backbone.featurize(load_audio(c)) for c in clips]
    assert len({f.shape[0] for f in feats}) == 3  # really padded
    heads = [("linear", store.get(t).tensors) for t in ("bob", "alice")] + [None]
    inputs, lengths = pad_features(feats)
    with torch.no_grad():
        mixed, out_lengths = model(inputs, lengths, HeadBatch.from_heads(heads))
        plain, _ = model(inputs, lengths, None)
        for b, (f, head) in enumerate(zip(feats, heads)):
            solo, _ = model(f[None], torch.tensor([f.shape[0]]), HeadBatch.from_heads([head]))
            torch.testing.assert_close(mixed[b, : int(out_lengths[b])], solo[0], atol=1e-4, rtol=0)
    n = int(out_lengths[0])
    assert (mixed[0, :n] - plain[0, :n]).abs().max() > 1e-2  # the trained head does act


async def test_adapted_dir_serves_over_http_and_a_fused_mixed_batch_equals_solo_requests(
    adapted, tmp_path
):
    root, _, out, _, _ = adapted
    settings = Settings(model_dir=out, state_dir=tmp_path / "state", open_access=True)
    data = (root / "audio" / "bob-2.wav").read_bytes()

    async def transcribe(task: str) -> dict:
        r = await client.post(
            f"/v1/transcribe?task_id={task}", content=data, headers={"content-type": "audio/wav"}
        )
        assert r.status_code == 200, r.text
        return r.json()

    tasks = ["base", "alice", "bob"]
    async with running_client(settings) as client:  # heads seeded from <out>/heads
        together = await asyncio.gather(*(transcribe(t) for t in tasks))
        alone = [await transcribe(t) for t in tasks]
        metrics = (await client.get("/metrics")).text
    assert [b["task_id"] for b in together] == tasks
    assert [b["head_version"] for b in together] == [None, 1, 1]
    assert [b["text"] for b in together] == [b["text"] for b in alone]
    assert all(b["text"] for b in alone)  # random weights still spell: a real comparison
    batches = float(re.search(r"^hra_batch_size_count (\S+)", metrics, re.M).group(1))
    assert batches < 2 * len(tasks)  # the concurrent requests shared a fused batch


def test_train_head_works_unchanged_on_the_adapted_dir(adapted, tmp_path):
    root, _, out, summary, manifests = adapted
    store = tmp_path / "store"
    argv = ["--model-dir", str(out), "train-head", "--task", "carol", "--manifest"]
    assert main(argv + [str(manifests[0]), "--store", str(store), "--steps", "3"]) == 0
    head = DiskStore(store).get("carol")
    assert head.meta.fingerprint == summary["fingerprint"]


# --- hostile or mistaken inputs: refused before anything is written ---


def _checkpoint(adapted) -> Path:
    root, hf_model = adapted[0], adapted[1]
    return root / "hf" if hf_model is not None else root / "tiny.nemo"


def test_a_manifest_task_id_that_is_a_path_is_refused_and_nothing_is_written(adapted, tmp_path):
    root, _, _, _, manifests = adapted
    bad = tmp_path / "bad.jsonl"
    row = json.loads(manifests[0].read_text().splitlines()[0]) | {"task": "../../etc"}
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(InvalidTaskId):
        adapt_backbone(_checkpoint(adapted), [bad], tmp_path / "out", AdaptConfig(steps=1))
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.staging").exists()


def test_an_existing_model_dir_is_never_overwritten(adapted, tmp_path):
    root, _, out, _, manifests = adapted
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        adapt_backbone(_checkpoint(adapted), manifests, out, AdaptConfig(steps=1))
    assert (out / "model.safetensors").read_bytes() == before


def test_a_checkpoint_that_is_neither_format_is_refused_by_name(tmp_path):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(np.zeros(8).tobytes())
    with pytest.raises(ValueError, match="Hugging Face CTC folder"):
        adapt_backbone(junk, [], tmp_path / "out", AdaptConfig(steps=1))
    assert not (tmp_path / "out").exists()


def test_an_unreadable_audio_file_fails_with_its_code_and_nothing_is_written(adapted, tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF" + b"\x00" * 40)  # a header and nothing behind it
    bad = tmp_path / "carol.jsonl"
    bad.write_text(json.dumps({"audio": "x.wav", "text": "hello"}) + "\n")
    with pytest.raises(AudioDecodeError) as failure:
        adapt_backbone(_checkpoint(adapted), [bad], tmp_path / "out", AdaptConfig(steps=1))
    assert failure.value.code == "invalid_audio" and "x.wav" in str(failure.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.staging").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"controller_dim": -3}, "controller_dim"),
        ({"controller_dim": 10**6}, "controller_dim"),
        ({"steps": 0}, "steps"),
        ({"batch_seconds": 1e9}, "batch_seconds"),
        ({"speeds": (100.0,)}, "speeds"),
    ],
)
def test_absurd_options_are_refused_before_anything_is_loaded(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        adapt_backbone(tmp_path / "none", [], tmp_path / "out", AdaptConfig(**options))
    assert not (tmp_path / "out").exists()
