"""Settings said, true and false: how often captions name ball, grass, water or snow (the scenery
heads' words, `training.grounding.SCENERY`) where a reference caption does or does not.

Reads what `evaluate` (`captions_dev.jsonl`, five references) or `evaluate-open --labels` and
`grounding_folds` (`open_world.jsonl`, one reference) wrote. A setting is counted true when any
reference says one of its words; a reference can leave a setting out, so "false" is an upper
bound, the same for every run compared.

    python -m benchmarks.experiments.settings_said runs/a/open_world.jsonl runs/b/open_world.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captioning.text import normalize_caption
from training.grounding import SCENERY


def settings_said(path: Path) -> dict[str, dict[str, int]]:
    """{setting: {"true": n, "false": n}} over the captions of one evaluation's rows."""
    counts = {name: {"true": 0, "false": 0} for name in SCENERY}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        said = set(row["caption"].split())
        references = row.get("references") or [row["reference"]]
        heard = set().union(*(normalize_caption(text) for text in references))
        for name, words in SCENERY.items():
            if said & words:
                counts[name]["true" if heard & words else "false"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows", type=Path, nargs="+", help="captions_dev.jsonl or open_world.jsonl")
    args = parser.parse_args()
    for path in args.rows:
        counts = settings_said(path)
        total = {kind: sum(c[kind] for c in counts.values()) for kind in ("true", "false")}
        print(json.dumps({"rows": str(path), **counts, "all": total}))


if __name__ == "__main__":
    main()
