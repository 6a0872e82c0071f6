"""The weight moving average that dev scoring and the export use."""

import keras
import numpy as np

from training.callbacks import WeightAverage


def _model() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def _shifted(model: keras.Model, amount: float) -> None:
    model.set_weights([w + amount for w in model.get_weights()])


def test_average_follows_the_formula_and_swaps_in_and_out(tmp_path):
    model = _model()
    start = [w.copy() for w in model.get_weights()]
    average = WeightAverage(0.5, tmp_path / "average.npz")
    average.set_model(model)
    average.on_train_begin()
    expected = [w.copy() for w in start]
    for step in range(4):
        _shifted(model, 1.0)
        average.on_train_batch_end(step)
        decay = min(0.5, (1 + step) / (10 + step))
        current = model.get_weights()
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, current, strict=True)]
    raw = model.get_weights()
    with average.swapped_in():
        for inside, wanted in zip(model.get_weights(), expected, strict=True):
            np.testing.assert_allclose(inside, wanted, rtol=1e-6)
    for after, before in zip(model.get_weights(), raw, strict=True):
        np.testing.assert_array_equal(after, before)
    assert average.updates == 4


def test_a_saved_average_is_resumed(tmp_path):
    model = _model()
    path = tmp_path / "average.npz"
    first = WeightAverage(0.9, path)
    first.set_model(model)
    first.on_train_begin()
    _shifted(model, 2.0)
    first.on_train_batch_end(0)
    first.save()
    _shifted(model, 5.0)  # the resumed run starts from other weights: the average is kept
    resumed = WeightAverage(0.9, path)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.updates == 1
    for ours, theirs in zip(resumed.average, first.average, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_without_warmup_the_average_stays_anchored_at_its_start(tmp_path):
    """Self-critical fine-tuning averages with a constant decay from the cross-entropy weights."""
    model = _model()
    start = [w.copy() for w in model.get_weights()]
    average = WeightAverage(0.9, tmp_path / "average.npz", warmup=False)
    average.set_model(model)
    average.on_train_begin()
    for step in range(3):
        _shifted(model, 1.0)
        average.on_train_batch_end(step)
    # The weights were start + 1, + 2, + 3: 0.9^3 start + 0.1 (0.9^2 (start + 1) + 0.9 (start +
    # 2) + start + 3) = start + 0.561. With the warm-up the first step would take 0.9 of the
    # new weights instead of 0.1.
    for ours, first in zip(average.average, start, strict=True):
        np.testing.assert_allclose(ours, first + 0.561, rtol=1e-5)
