"""Names of the decoder's layers: how `captioning.decoder_step` finds the weights of the Keras model
built in `training.modeling.decoder`, whether from the model or straight from `decoder.keras`."""

EMBEDDING = "word_embedding"
INIT_H = "init_hidden"
INIT_C = "init_cell"
REGION_KEYS = "region_keys"
LSTM = "lstm"
COMBINE = "attention_combine"
VOCAB_LOGITS = "vocab_logits"
# The concept-conditioned decoder's fixed table of concept vectors (GloVe), one row per concept
# plus row 0 for "no concept"; older decoders have no such layer.
ENTITY_VECTORS = "entity_vectors"
# Its concept's share of the initial LSTM state (no bias: INIT_H and INIT_C have theirs).
ENTITY_INIT_H = "entity_init_hidden"
ENTITY_INIT_C = "entity_init_cell"

# Every layer whose weights decoding uses (and the ENTITY_ ones, when the decoder has them).
WEIGHTED_LAYERS = (EMBEDDING, INIT_H, INIT_C, REGION_KEYS, LSTM, COMBINE, VOCAB_LOGITS)
# ... and its second path to the words: the output's projection into the GloVe space, and the
# vocabulary's fixed GloVe vectors (decoding folds both into VOCAB_LOGITS).
OUTPUT_VECTOR = "output_vector"
WORD_VECTORS = "word_vectors"
# A decoder that also takes each caption's style (which corpus wrote it) learns one vector per
# style, added to the concept's vector; older decoders have no such layer.
STYLE_VECTORS = "style_vectors"
ENTITY_LAYERS = (
    ENTITY_VECTORS,
    ENTITY_INIT_H,
    ENTITY_INIT_C,
    OUTPUT_VECTOR,
    WORD_VECTORS,
    STYLE_VECTORS,
)
