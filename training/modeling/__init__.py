"""Training's Keras side: the model builders, the Keras encoder runtime and loading whole
Keras bundles. Serving never imports this package: `captioning` reads the same files without
TensorFlow."""
