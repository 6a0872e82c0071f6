"""Captioner core, what serving imports: image preprocessing, the LiteRT runtimes, decoding,
the vocabulary and the artifact bundle. No TensorFlow: the Keras models and their exports are
training's (`training.modeling`, `training.export`).

Both the HTTP service (`app`) and the offline training package (`training`) import from here;
nothing here imports either of them.
"""

__version__ = "0.1.0"
