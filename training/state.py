"""The loop's state, checkpointed after every epoch so that `--resume` continues a run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from captioning.bundle import write_json

CROSS_ENTROPY = "cross-entropy"
SELF_CRITICAL = "self-critical"

# The files of the work folder's checkpoints/ directory.
CHECKPOINT_FILE = "model_checkpoint.keras"  # model and optimizer after the last epoch
FINAL_FILE = "model_final.keras"  # the last weights trained, kept when the best are exported
BEST_WEIGHTS_FILE = "best.weights.h5"
AVERAGE_FILE = "weight_average.npz"
STATE_FILE = "train_state.json"
SELF_CRITICAL_FILE = "self_critical.weights.h5"
SELF_CRITICAL_AVERAGE_FILE = "self_critical_average.npz"
# The names state files written before TrainState used, so that such a run still resumes.
_EARLIER_NAMES = {"sc_epochs": "self_critical_epochs", "sc_minutes": "self_critical_minutes"}


@dataclass
class TrainState:
    """Where a run is: epochs done, the best dev CIDEr so far, and every epoch's record."""

    epoch: int = 0  # epochs finished, cross-entropy and self-critical together
    best_cider: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since dev CIDEr last improved
    history: list[dict[str, Any]] = field(default_factory=list)
    phase: str = CROSS_ENTROPY
    self_critical_epochs: int = 0
    self_critical_minutes: float = 0.0

    @property
    def in_self_critical(self) -> bool:
        return self.phase == SELF_CRITICAL

    def improved(self, cider: float, epoch: int) -> bool:
        """Record a dev score; True when it is the best so far."""
        if cider > self.best_cider:
            self.best_cider, self.best_epoch, self.stale_epochs = cider, epoch, 0
            return True
        self.stale_epochs += 1
        return False

    def save(self, checkpoint_dir: Path) -> None:
        write_json(checkpoint_dir / STATE_FILE, asdict(self))

    @classmethod
    def load(cls, checkpoint_dir: Path) -> TrainState:
        stored = json.loads((checkpoint_dir / STATE_FILE).read_text())
        return cls(**{_EARLIER_NAMES.get(key, key): value for key, value in stored.items()})

    @classmethod
    def exists(cls, checkpoint_dir: Path) -> bool:
        return (checkpoint_dir / STATE_FILE).is_file()
