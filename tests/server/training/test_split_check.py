from server.config import get_settings
from server.training.split_check import format_split_table, split_check


def test_split_check_trains_a_fresh_head_and_scores_both_splits_both_ways(fsdd_root):
    (result,) = split_check(get_settings().model_dir, fsdd_root, ["theo"], steps=3)
    wers = (
        result.wer_held_out,
        result.wer_test,
        result.wer_held_out_vocabulary,
        result.wer_test_vocabulary,
    )
    assert result.speaker == "theo" and all(0 <= w <= 2 for w in wers)
    # three steps from a zero head: still the backbone, far from the trained heads' 2-12%
    assert result.wer_test > 0.3
    assert "| theo |" in format_split_table([result])
