"""Names of the decoder's layers: how `captioning.decoder_step` finds the weights of the Keras model
built in `training.modeling.decoder`, whether from the model or straight from `decoder.keras`."""

EMBEDDING = "word_embedding"
INIT_H = "init_hidden"
INIT_C = "init_cell"
REGION_KEYS = "region_keys"
LSTM = "lstm"
COMBINE = "attention_combine"
VOCAB_LOGITS = "vocab_logits"

# Every layer whose weights decoding uses.
WEIGHTED_LAYERS = (EMBEDDING, INIT_H, INIT_C, REGION_KEYS, LSTM, COMBINE, VOCAB_LOGITS)
