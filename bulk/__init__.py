"""Bulk captioning on Ray Data: `python -m bulk PHOTOS... --output captions.jsonl`.

The driver lists the images (folders, globs, list files; local paths or any URI pyarrow reads,
such as s3://bucket/photos/), leaves out those already in the output, and streams the rest
through a pool of actors that each load `CaptionPredictor` once and caption batches exactly as
`python -m training caption` and `captioner caption` do (same reading, decoding and rows). The
driver writes the rows as they arrive, so a rerun after a crash or Ctrl-C carries on where the
last one stopped.

`ray.init()` starts a local Ray, or joins the cluster in `RAY_ADDRESS`: nothing else changes.
Ray is the optional `bulk` extra (`pip install -e '.[bulk]'`); serving never imports it.

Arrows: this package imports `captioning` only; `captioning`, `app` and `training` never import
it. Files: `cli` (the command line), `inputs` (listing and opening images), `writers` (JSON lines
and Parquet), `ray_run` (the actor and the driver).
"""


class BulkError(Exception):
    """A problem with the command's inputs or environment, reported without a traceback."""
