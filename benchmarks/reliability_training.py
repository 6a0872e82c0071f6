"""Training under faults: SIGKILL mid-epoch, then `--resume`; and the tiny model for reports.

Shared by tests/reliability/test_training_faults.py and `python -m benchmarks.reliability`.
Both train training/fixture.py's tiny recipe on its generated dataset, as the test suite does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.server_process import REPO_ROOT
from training.fixture import tiny_config, tiny_train_arguments, write_flickr8k

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # TensorFlow start-up and feature extraction on a busy machine
STATE_FILE = Path("checkpoints") / "train_state.json"


def write_tiny_dataset(folder: Path) -> Path:
    """The generated Flickr8k-layout dataset of 18 shape images (training/fixture.py)."""
    write_flickr8k(folder)
    return folder


def _train_command(data: Path, run: Path, epochs: int, resume: bool = False) -> list[str]:
    """The tiny recipe (its patience never stops early, and it has no self-critical phase:
    the cross-entropy epochs are what is counted) as a `python -m training train` process."""
    arguments = tiny_train_arguments(
        data_dir=data,
        artifacts_dir=run / "artifacts",
        work_dir=run / "work",
        epochs=epochs,
        resume=resume,
        export_tflite=False,
        # Random encoder weights: the resume logic does not depend on them, and skipping the
        # ImageNet checkpoint saves start-up time in both processes.
        encoder_weights=None,
    )
    return [sys.executable, "-m", "training", "train", *arguments]


def _env_without_java() -> dict[str, str]:
    """Without java on the PATH the final evaluation skips METEOR (its documented fallback),
    which saves a quarter of a minute; the resume logic is the same either way."""
    path = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if not (Path(folder) / "java").exists()
    )
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PATH=path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class ResumeResult:
    killed_exit_code: int | None = None
    finished_before_kill: int = 0
    history_at_kill: list[dict] = field(default_factory=list)
    resumed_exit_code: int | None = None
    resumed_log: str = ""
    final_history: list[dict] = field(default_factory=list)
    epochs_run: int | None = None
    seconds: float = 0.0

    @property
    def epochs_expected(self) -> int:
        return self.finished_before_kill + 1

    def problems(self) -> list[str]:
        """Empty when no finished epoch was lost and training went on after it."""
        found = []
        if self.killed_exit_code != -signal.SIGKILL:
            found.append(f"the first run ended with {self.killed_exit_code}, not SIGKILL")
        if self.finished_before_kill < 2:
            found.append(f"killed after epoch {self.finished_before_kill}, expected >= 2")
        kept = [r["epoch"] for r in self.history_at_kill]
        if kept != list(range(1, self.finished_before_kill + 1)):
            found.append(f"the checkpoint's history is {kept}")
        if self.resumed_exit_code != 0:
            found.append(f"the resumed run exited with {self.resumed_exit_code}")
        if f"resuming after epoch {self.finished_before_kill}" not in self.resumed_log:
            found.append("the resumed run did not say where it resumed")
        epochs = [r["epoch"] for r in self.final_history]
        if epochs != list(range(1, self.epochs_expected + 1)):
            found.append(f"the final history has epochs {epochs}")
        if self.final_history[: self.finished_before_kill] != self.history_at_kill:
            found.append("the epochs finished before the kill were changed or trained again")
        if self.epochs_run != self.epochs_expected:
            found.append(f"the manifest says {self.epochs_run} epochs were run")
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "killed_exit_code": self.killed_exit_code,
            "finished_before_kill": self.finished_before_kill,
            "resumed_exit_code": self.resumed_exit_code,
            "final_epochs": [r["epoch"] for r in self.final_history],
            "problems": self.problems(),
            "seconds": round(self.seconds, 1),
        }


def kill_mid_epoch_and_resume(folder: Path, kill_after_epoch: int = 2) -> ResumeResult:
    """Train (tiny), SIGKILL as soon as epoch `kill_after_epoch` is checkpointed (the next epoch
    has just begun), then resume for one more epoch than had finished."""
    started = time.perf_counter()
    result = ResumeResult()
    data = write_tiny_dataset(folder / "flickr8k")
    state_file = folder / "work" / STATE_FILE
    env = _env_without_java()
    log_path = folder / "first.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen(
            _train_command(data, folder, 12), cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while (state := _read_json(state_file)) is None or state["epoch"] < kill_after_epoch:
                if first.poll() is not None:
                    raise RuntimeError(f"training ended early:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("training never finished its second epoch")
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    result.killed_exit_code = first.returncode
    killed = _read_json(state_file) or {}  # written atomically: whole whenever it died
    result.finished_before_kill = int(killed.get("epoch", 0))
    result.history_at_kill = list(killed.get("history", []))
    logger.info("killed after epoch %d; resuming", result.finished_before_kill)

    resumed = subprocess.run(
        _train_command(data, folder, result.epochs_expected, resume=True),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    result.resumed_exit_code = resumed.returncode
    result.resumed_log = resumed.stderr
    manifest = _read_json(folder / "artifacts" / "manifest.json") or {}
    training = manifest.get("training", {})
    result.final_history = list(training.get("history", []))
    result.epochs_run = training.get("epochs_run")
    result.seconds = time.perf_counter() - started
    return result


def build_tiny_model(folder: Path) -> Path:
    """Train the test suite's tiny captioner into `folder`/artifacts (about a minute)."""
    # Imported here: only this part of the reliability run loads TensorFlow.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.train import train

    data = write_tiny_dataset(folder / "flickr8k")
    config = tiny_config(data, folder / "artifacts", folder / "work")
    train(config)
    return config.artifacts_dir
