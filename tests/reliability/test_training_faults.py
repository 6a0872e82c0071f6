"""Fault: the training process is killed (SIGKILL, no chance to clean up) in the middle of an
epoch; `--resume` must continue after the last finished epoch and lose none of them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from benchmarks.reliability_training import kill_mid_epoch_and_resume

pytestmark = pytest.mark.slow  # two training processes (TensorFlow start-up each)


def test_killed_mid_epoch_then_resumed_loses_no_finished_epoch(tmp_path: Path) -> None:
    result = kill_mid_epoch_and_resume(tmp_path, kill_after_epoch=2)
    assert result.killed_exit_code == -signal.SIGKILL
    assert result.finished_before_kill >= 2
    # The state file is written atomically: whole, whatever the moment of death.
    kept = [record["epoch"] for record in result.history_at_kill]
    assert kept == list(range(1, result.finished_before_kill + 1))
    assert result.resumed_exit_code == 0, result.resumed_log[-3000:]
    epochs = [record["epoch"] for record in result.final_history]
    assert epochs == list(range(1, result.finished_before_kill + 2))
    # The epochs finished before the kill are kept as they were, not trained again.
    assert result.final_history[: result.finished_before_kill] == result.history_at_kill
    assert result.problems() == []
