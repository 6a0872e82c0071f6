"""Captioner core: preprocessing, encoders, decoder, vocabulary, decoding and the artifact bundle.

Both the HTTP service (`app`) and the offline training package (`training`) import from here;
nothing here imports either of them.
"""

__version__ = "0.1.0"
