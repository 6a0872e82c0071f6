"""Captioner benchmarks: `python -m benchmarks` (or `make bench`) measures this machine.

Modules: `stats` (pure helpers), `machine` (what we ran on), `images` (generated photos),
`encoder`, `decoder`, `baseline` (the seed-style tutorial captioner), `server` (the HTTP service
in a subprocess, under load), `targets` (PASS/FAIL ratios) and `report` (JSON, Markdown, plot).
"""
