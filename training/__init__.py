"""Offline training package: Flickr8k -> features -> decoder -> `artifacts/`.

Imports the core (`captioning`) and never the service (`app`).
"""
