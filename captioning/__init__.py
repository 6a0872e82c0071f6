"""Captioner core, what serving imports: image preprocessing, the LiteRT runtimes, the
decoder's step (`decoder_step`) and the searches over it (`search`, with one `SearchSettings`),
concepts and subjects, the vocabulary and the artifact bundle. No TensorFlow: the Keras models
and their exports are training's (`training.modeling`, `training.export`).

The HTTP service (`app`), bulk captioning and the offline training package (`training`) import
from here; nothing here imports any of them.
"""

__version__ = "0.1.0"
