"""training/fixture.py: one tiny recipe, whether it reaches `train()` or the command line."""

from __future__ import annotations

from pathlib import Path

from training.cli import _parser, config_from_arguments
from training.fixture import TINY_RECIPE, tiny_config, tiny_train_arguments


def test_the_command_line_form_of_the_recipe_is_the_same_configuration() -> None:
    folders = {"data_dir": Path("d"), "artifacts_dir": Path("a"), "work_dir": Path("w")}
    changes = {"epochs": 3, "resume": True, "export_tflite": False, "encoder_weights": None}
    arguments = tiny_train_arguments(**folders, **changes)
    parsed = config_from_arguments(_parser().parse_args(["train", *arguments]))
    assert parsed == tiny_config(**folders, **changes)
    assert parsed.hidden_dim == TINY_RECIPE["hidden_dim"] and parsed.epochs == 3
    assert not parsed.concepts and parsed.encoder_weights is None
