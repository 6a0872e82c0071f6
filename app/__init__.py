"""Captioner HTTP service: FastAPI app, micro-batcher, upload handling and the web page.

It depends on `captioning` only, never on `training`, so the serving image stays small.
"""
