"""The loop state that `--resume` reads back."""

from __future__ import annotations

import json

from training.state import STATE_FILE, TrainState


def test_state_survives_a_save_and_load(tmp_path) -> None:
    state = TrainState(epoch=3, history=[{"epoch": 3, "dev_CIDEr": 0.5}])
    assert state.improved(0.5, epoch=3)
    assert not state.improved(0.4, epoch=4)

    state.save(tmp_path)

    loaded = TrainState.load(tmp_path)
    assert loaded == state
    assert (loaded.best_epoch, loaded.stale_epochs) == (3, 1)


def test_a_state_file_from_before_the_dataclass_still_resumes(tmp_path) -> None:
    earlier = {
        "epoch": 7,
        "best_cider": 0.52,
        "best_epoch": 6,
        "stale_epochs": 1,
        "history": [],
        "phase": "self-critical",
        "sc_epochs": 1,
        "sc_minutes": 6.5,
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(earlier))

    state = TrainState.load(tmp_path)

    assert state.in_self_critical
    assert (state.self_critical_epochs, state.self_critical_minutes) == (1, 6.5)
