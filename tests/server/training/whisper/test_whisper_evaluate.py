"""The Whisper table: heads are measured against the stronger of the two zero-shot windows."""

from __future__ import annotations

from server.training.whisper.evaluate import WhisperTaskResult, best_zero_shot, format_table

PARAMS = {"base": 0, "base_pad": 0, "hra_linear": 24576, "hra_ffn": 14336}


def _result(task: str, base: float, base_pad: float, linear: float) -> WhisperTaskResult:
    wer = {"base": base, "base_pad": base_pad, "hra_linear": linear, "hra_ffn": linear}
    return WhisperTaskResult(task, 40, wer, PARAMS, {})


def test_the_relative_cut_is_against_the_better_zero_shot_window_never_the_weaker():
    loops_when_cut = _result("synth-a", base=1.9, base_pad=0.9, linear=0.45)
    better_when_cut = _result("synth-b", base=0.4, base_pad=0.7, linear=0.3)
    assert best_zero_shot(loops_when_cut) == 0.9 and best_zero_shot(better_when_cut) == 0.4
    table = format_table([loops_when_cut, better_when_cut])
    # 50% against the native window's 0.9 (not 76% against the looping cut window's 1.9)
    assert "| synth-a | 40 | 190.0% | 90.0% | 45.0% | 45.0% | 50% | 50% |" in table
    # 25% against the cut window's 0.4 (not 57% against the padded window's 0.7)
    assert "| synth-b | 40 | 40.0% | 70.0% | 30.0% | 30.0% | 25% | 25% |" in table


def test_a_table_from_an_older_run_without_base_pad_still_prints():
    old = WhisperTaskResult("t", 10, {"base": 0.5, "hra_linear": 0.1, "hra_ffn": 0.2}, PARAMS, {})
    table = format_table([old])
    assert "base_pad" not in table and "| t | 10 | 50.0% | 10.0% | 20.0% | 80% | 60% |" in table
