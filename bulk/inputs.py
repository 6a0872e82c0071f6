"""What the bulk command captions: images listed from files, folders, globs, list files and
URIs, and opened from a local path or any filesystem pyarrow reads."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bulk import BulkError
from captioning.images import decode_image
from captioning.offline import IMAGE_SUFFIXES, expand_paths

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ImageRef:
    """`image`: the name written in the rows (as given, like `training caption`); `location`:
    what a worker opens (an absolute path, or the URI), valid whatever its working folder."""

    image: str
    location: str


def is_uri(text: str) -> bool:
    return "://" in text


def list_images(inputs: Iterable[str]) -> list[ImageRef]:
    """Images in the inputs (files, folders searched recursively, globs, URIs), each once."""
    refs: list[ImageRef] = []
    for item in inputs:
        if is_uri(item):
            refs += _list_uri(item)
            continue
        if _GLOB_CHARACTERS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise BulkError(f"no file matches {item}")
            paths = expand_paths(Path(m) for m in matches)
        else:
            paths = expand_paths([Path(item)])
        refs += [ImageRef(str(p), str(p.resolve())) for p in paths]
    return list({ref.image: ref for ref in refs}.values())


def _list_uri(uri: str) -> list[ImageRef]:
    from pyarrow import fs  # Ray Data depends on pyarrow

    filesystem, path = fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [ImageRef(uri, uri)]
    if info.type != fs.FileType.Directory:
        raise BulkError(f"{uri} does not exist")
    found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    names = sorted(
        f.path
        for f in found
        if f.type == fs.FileType.File and Path(f.path).suffix.lower() in IMAGE_SUFFIXES
    )
    # Local paths come back absolute ("/x"), bucket paths without the slash ("bucket/x").
    return [ImageRef(f"{scheme}://{name}", f"{scheme}://{name}") for name in names]


def read_list_file(path: Path) -> list[str]:
    """A file of images or folders, one per line; blank lines and # comments left out."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_image_location(location: str, min_size: int) -> Image.Image:
    """A local file or a URI's bytes, decoded as `CaptionPredictor.read_image` decodes."""
    if is_uri(location):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(location)
        with filesystem.open_input_file(path) as handle:
            data = handle.readall()
    else:
        data = Path(location).read_bytes()
    return decode_image(data, min_size=min_size)
