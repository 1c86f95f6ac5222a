"""The hra CLI: transcribe (every model kind), train-head, build-default --quick, evaluate."""

from __future__ import annotations

import json
import shutil

import pytest

from adapters_store.disk_store import DiskStore
from server.cli import main
from server.config import REPO_ROOT
from server.data.fsdd import load_fsdd
from server.data.manifest import Utterance, write_manifest
from tests.helpers import DEFAULT_MODEL_DIR
from tests.server.whisper_serving.helpers import WHISPER_DIR, normalise

JFK = REPO_ROOT / "tests" / "data" / "jfk.flac"  # 11 s, 44.1 kHz stereo FLAC


def _transcripts(capsys) -> list[tuple[str, str]]:
    """transcribe's stdout: one `path<TAB>text` line per file."""
    lines = capsys.readouterr().out.strip().splitlines()
    return [tuple(line.split("\t")) for line in lines]


def test_transcribe_cli_prints_each_file_with_its_text(capsys, fsdd_test):
    clips = [u for u in fsdd_test if u.task == "fsdd-yweweler"][:3]
    assert main(["transcribe", "--task", "fsdd-yweweler", *[c.audio for c in clips]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [c.audio for c in clips]
    assert sum(line.split("\t")[1] == c.text for line, c in zip(lines, clips)) >= 2


def test_transcribe_cli_reads_any_audio_file_on_the_default_digit_model(capsys, fsdd_test):
    clip = fsdd_test[0]
    assert main(["--model-dir", str(DEFAULT_MODEL_DIR), "transcribe", str(JFK), clip.audio]) == 0
    (jfk, jfk_text), (digit, digit_text) = _transcripts(capsys)
    assert (jfk, digit) == (str(JFK), clip.audio)
    assert jfk_text.replace(" ", "").isalpha() and digit_text  # digit words, never English


def test_transcribe_cli_runs_whisper_model_dirs_as_served(capsys, tmp_path):
    heads = tmp_path / "heads"
    shutil.copytree(WHISPER_DIR / "heads", heads)
    args = ["--model-dir", str(WHISPER_DIR), "transcribe", "--store", str(heads)]
    assert main([*args, str(JFK)]) == 0
    [(path, text)] = _transcripts(capsys)
    assert path == str(JFK)
    assert normalise(text) == (
        "and so my fellow americans ask not what your country can do for you "
        "ask what you can do for your country"
    )
    assert main([*args, "--task", "synth-fast", str(JFK)]) == 0  # a shipped head
    [(path, text)] = _transcripts(capsys)
    assert path == str(JFK) and "country" in normalise(text)


def test_transcribe_cli_runs_a_hugging_face_ctc_model_dir(capsys, tmp_path, fsdd_test):
    pytest.importorskip("transformers")
    from tests.server.models.hf.test_loader import _hf_model_dir

    model_dir = _hf_model_dir(tmp_path)  # random weights: its text is letters, not words
    files = [str(JFK), fsdd_test[0].audio]
    assert main(["--model-dir", str(model_dir), "transcribe", *files]) == 0
    lines = _transcripts(capsys)
    assert [path for path, _ in lines] == files
    assert all(set(text) <= set("abcdefghijklmnopqrstuvwxyz' ") for _, text in lines)
    assert any(text.strip() for _, text in lines)


@pytest.mark.slow
def test_train_head_cli_registers_a_head_and_vocabulary_that_beat_the_backbone(
    tmp_path, fsdd_root, capsys
):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / "model.safetensors", model_dir)
    train = load_fsdd(fsdd_root, range(0, 30), speakers=["lucas"])
    manifest = tmp_path / "lucas.jsonl"
    write_manifest(manifest, [Utterance(u.audio, u.text, "new") for u in train])
    assert (
        main(
            [
                "--model-dir",
                str(model_dir),
                "train-head",
                "--store",
                str(tmp_path / "heads"),
                "--task",
                "lucas-again",
                "--manifest",
                str(manifest),
                "--steps",
                "120",
                "--tempos",
                "1.2",
                "--owner",
                "me",
                "--vocabulary-from-manifest",
            ]
        )
        == 0
    )
    head = DiskStore(tmp_path / "heads").get("lucas-again")
    assert head.meta.owner == "me" and head.meta.version == 1
    assert head.meta.vocabulary == tuple(sorted({u.text for u in train}))

    test = [u for u in load_fsdd(fsdd_root, range(30, 40), speakers=["lucas"])][::3]
    files = [u.audio for u in test]
    capsys.readouterr()
    store = ["--store", str(tmp_path / "heads")]
    main(["--model-dir", str(model_dir), "transcribe", *store, "--task", "lucas-again", *files])
    adapted = capsys.readouterr().out.strip().splitlines()
    main(["--model-dir", str(model_dir), "transcribe", "--task", "base", *files])
    base = capsys.readouterr().out.strip().splitlines()
    right = [
        sum(line.split("\t")[1] == u.text for line, u in zip(out, test)) for out in (adapted, base)
    ]
    assert right[0] > right[1]


@pytest.mark.slow
def test_quick_build_and_evaluate_produce_a_model_store_and_table(tmp_path, fsdd_root, capsys):
    model_dir, work = tmp_path / "model", tmp_path / "work"
    args = ["--model-dir", str(model_dir), "--work-dir", str(work), "--fsdd-root", str(fsdd_root)]
    assert main([*args, "build-default", "--quick"]) == 0
    assert (model_dir / "model.safetensors").exists()
    store = DiskStore(model_dir / "heads")
    assert "synth-noisy" in store.task_ids() and "fsdd-george" in store.task_ids()
    assert DiskStore(model_dir / "baselines" / "residual").get("fsdd-george").meta.rank == 12
    out_json = tmp_path / "eval.json"
    data = str(work / "quick" / "data")
    assert main([*args, "evaluate", "--json", str(out_json), "--data-dir", data]) == 0
    table = capsys.readouterr().out
    assert "| synth-noisy |" in table and "params per task" in table
    rows = json.loads(out_json.read_text())
    assert {r["task"] for r in rows} >= {"synth-noisy", "fsdd-theo"}
    assert all(set(r["wer"]) == {"backbone", "hra_linear", "hra_ffn", "residual"} for r in rows)
