"""Command-line pieces shared by `make bench` and `make reliability`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def split_parts(parser: argparse.ArgumentParser, text: str, choices: Sequence[str]) -> list[str]:
    """`--parts a,b` as a list, exiting with a usage error on a name not in `choices`."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(parts) - set(choices)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(choices)}")
    return parts
