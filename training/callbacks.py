"""The cross-entropy loop's callbacks: the weight moving average, and dev scoring that keeps the
best epoch, decays the learning rate, stops early and checkpoints."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np

from captioning.bundle import atomic_write
from captioning.predictor import CaptionPredictor
from captioning.types import EncodedImages
from training.config import EXPORT_RESERVE_MINUTES, TrainConfig
from training.data import Split
from training.features import Features
from training.metrics import score_captions
from training.state import BEST_WEIGHTS_FILE, CHECKPOINT_FILE, CROSS_ENTROPY, TrainState

logger = logging.getLogger(__name__)


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of the weights, updated after every training step.

    The weights of any single step carry the noise of its batch; their recent average usually
    captions better, and it makes the per-epoch dev scores (and so the selection) less noisy.
    Early on the average follows quickly: the decay is min(decay, (1 + t) / (10 + t)) at step t,
    as in tf.train.ExponentialMovingAverage; without `warmup` the decay is constant, so the
    average stays anchored at the weights it started from (self-critical fine-tuning). Training
    itself continues on the raw weights; dev scoring and the export swap the average in
    (`swapped_in`). Saved with every checkpoint, so `--resume` continues the same average.
    """

    def __init__(self, decay: float, path: Path, warmup: bool = True) -> None:
        super().__init__()
        self.decay, self.path, self.warmup = decay, path, warmup
        self.average: list[np.ndarray] | None = None
        self.updates = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.average is not None:
            return
        if self.path.is_file():
            with np.load(self.path) as stored:
                self.updates = int(stored["updates"])
                self.average = [stored[f"w{i}"] for i in range(len(stored.files) - 1)]
            logger.info("resuming the weight average after %d steps", self.updates)
        else:
            self.average = [np.array(w, np.float32) for w in self.model.get_weights()]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        decay = self.decay
        if self.warmup:
            decay = min(decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.average, self.model.get_weights(), strict=True):
            average *= decay
            average += (1 - decay) * current
        self.updates += 1

    def save(self) -> None:
        arrays = {f"w{i}": a for i, a in enumerate(self.average)}

        def write(path: Path) -> None:
            with path.open("wb") as handle:
                np.savez(handle, updates=self.updates, **arrays)

        atomic_write(self.path, write)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones again after."""
        raw = self.model.get_weights()
        self.model.set_weights(self.average)
        try:
            yield
        finally:
            self.model.set_weights(raw)


def averaged_weights(average: WeightAverage | None) -> contextlib.AbstractContextManager:
    """The model holds `average`'s weights inside the block; with no average, its own."""
    return average.swapped_in() if average is not None else contextlib.nullcontext()


class DevSelection(keras.callbacks.Callback):
    """Scores dev captions after each epoch, keeps the best weights, decays the LR on plateaus,
    stops early, and checkpoints everything needed to resume."""

    def __init__(
        self,
        config: TrainConfig,
        make_predictor: Callable[[keras.Model], CaptionPredictor],
        dev: Split,
        dev_features: Features,
        state: TrainState,
        started: float,
        average: WeightAverage | None = None,
    ) -> None:
        super().__init__()
        self.config, self.make_predictor, self.state = config, make_predictor, state
        self.started, self.average = started, average
        self.dev = dev
        # With the concepts, dev is captioned as the service captions it.
        self.dev_encoded = EncodedImages(
            np.asarray(dev_features.grid, np.float32), dev_features.pooled, dev_features.concepts
        )
        self.checkpoint_dir = config.work_dir / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.epoch_started = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with averaged_weights(self.average):  # score (and keep, if best) the averaged weights
            improved = self.score_and_keep_best(epoch, logs or {})
        self._adjust_learning_rate(improved)
        self.state.epoch = epoch + 1
        # Model + optimizer (+ average) first, then the state that points at them: a crash in
        # between resumes from the previous epoch's state and loses nothing already recorded.
        atomic_write(self.checkpoint_dir / CHECKPOINT_FILE, self.model.save)
        if self.average is not None:
            self.average.save()
        self.state.save(self.checkpoint_dir)
        if self.state.stale_epochs >= self.config.patience:
            logger.info("no dev improvement for %d epochs: stopping", self.config.patience)
            self.model.stop_training = True
        if self._next_epoch_overruns_budget(self.state.history[-1]["minutes"]):
            logger.info(
                "another epoch would overrun the %.0f-minute budget: stopping",
                self.config.time_budget_minutes,
            )
            self.model.stop_training = True

    def score_and_keep_best(
        self,
        epoch: int,
        logs: dict,
        phase: str = CROSS_ENTROPY,
        learning_rate: float | None = None,
    ) -> bool:
        """Score the model's current weights on dev; save them if they are the best so far."""
        predictor = self.make_predictor(self.model)
        settings = predictor.search.with_options(beam_size=self.config.eval_beam_size)
        started = time.perf_counter()
        captions = [r.best.text for r in predictor.generate(self.dev_encoded, settings)]
        scores = score_captions(self.dev.raw_captions, captions, full=False)
        cider, bleu4 = float(scores["CIDEr"]), float(scores["BLEU-4"])
        if learning_rate is None:
            learning_rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        record = {
            "epoch": epoch + 1,
            "phase": phase,
            **{name: float(value) for name, value in logs.items()},  # loss, or mean reward
            "dev_BLEU-4": bleu4,
            "dev_CIDEr": cider,
            "distinct_words": len({w for c in captions for w in c.split()}),
            "learning_rate": float(learning_rate),
            "minutes": (time.time() - self.started) / 60,
            "eval_seconds": time.perf_counter() - started,
        }
        self.state.history.append(record)
        logger.info(
            "epoch %(epoch)d (%(phase)s): dev BLEU-4 %(dev_BLEU-4).4f CIDEr %(dev_CIDEr).4f "
            "(%(distinct_words)d words) lr %(learning_rate).2e",
            record,
        )
        if not self.state.improved(cider, epoch + 1):
            return False
        atomic_write(self.checkpoint_dir / BEST_WEIGHTS_FILE, self.model.save_weights)
        return True

    def _adjust_learning_rate(self, improved: bool) -> None:
        decay = self.config.epoch_lr_decay
        if not improved:
            decay *= self.config.lr_decay
            logger.info("dev CIDEr did not improve: learning rate x %.2f", self.config.lr_decay)
        if decay != 1.0:
            current = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            new_lr = max(current * decay, self.config.min_learning_rate)
            self.model.optimizer.learning_rate.assign(new_lr)

    def _next_epoch_overruns_budget(self, minutes: float) -> bool:
        """Stop while another epoch (as long as this one, dev scoring included), self-critical
        training and the export still fit in the budget, rather than noticing only once it is
        spent."""
        budget = self.config.time_budget_minutes
        if budget is None:
            return False
        epoch_minutes = (time.time() - self.epoch_started) / 60
        reserved = EXPORT_RESERVE_MINUTES + self.config.self_critical_minutes
        return minutes + epoch_minutes + reserved > budget
