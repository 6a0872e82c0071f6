"""Encoder features, extracted once per backbone and dataset, cached on disk, reused by retraining.

Images stream through `tf.data` (decode and resize in parallel, prefetch) into the encoder - the
LiteRT export the service runs when there is one - and the features go straight into
memory-mapped `.npy` files, so memory stays bounded by a batch
whatever the dataset's size. The grid is stored as float16 (half the disk, no measurable loss).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from numpy.lib.format import open_memmap
from tqdm import tqdm

from captioning.images import ImageError, load_image_file, to_model_input
from captioning.runtime import EncoderRuntime

logger = logging.getLogger(__name__)

EXTRACT_BATCH_SIZE = 64
CACHE_FORMAT = 2  # 2: large JPEGs decode at a reduced DCT scale (decode_upload)
# The cache key also names the encoder runtime: LiteRT's float16 features are not TensorFlow's.


@dataclass
class Features:
    grid: np.ndarray  # (images, regions, channels) float16 (memory-mapped)
    pooled: np.ndarray  # (images, channels) float32
    image_ids: list[str]
    failed: list[str]  # images that could not be read; their rows are zeros
    # (images, concepts) probabilities from the encoder's ImageNet head, when the run has
    # concepts (training.train.add_concepts); not cached.
    concepts: np.ndarray | None = None
    # For a decoder conditioned on concepts: each photo's concept as it takes it (index + 1,
    # 0 for none).
    entities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)


def cache_key(backbone: str, weights_id: str, input_size: int, paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{backbone}|{weights_id}|{input_size}".encode())
    for path in paths:
        digest.update(path.name.encode())
    return digest.hexdigest()[:16]


def _load_pixels(path: bytes, size: int) -> tuple[np.ndarray, bool]:
    try:
        return to_model_input(load_image_file(Path(path.decode()), min_size=size), size), True
    except (ImageError, OSError) as exc:
        logger.warning("cannot read %s: %s", path.decode(), exc)
        return np.zeros((size, size, 3), np.float32), False


def _image_stream(paths: Sequence[Path], size: int, batch_size: int) -> tf.data.Dataset:
    def load(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels, ok = tf.numpy_function(
            lambda p: _load_pixels(p, size), [path], [tf.float32, tf.bool]
        )
        pixels.set_shape((size, size, 3))
        return pixels, ok

    dataset = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(2)


def extract_features(
    encoder: EncoderRuntime,
    paths: Sequence[Path],
    input_size: int,
    cache_dir: Path,
    split_name: str,
    batch_size: int = EXTRACT_BATCH_SIZE,
    mirror: bool = False,
) -> Features:
    """Features for `paths`, from the cache when present, else extracted and cached.

    `mirror`: of the photos flipped left to right (after the same preprocessing), for
    augmentation; cache them under another `split_name`.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    index_path = cache_dir / f"{split_name}.json"
    grid_path, pooled_path = (
        cache_dir / f"{split_name}_grid.npy",
        cache_dir / f"{split_name}_pooled.npy",
    )
    image_ids = [p.name for p in paths]
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("image_ids") == image_ids:
            logger.info("features for %s: cached in %s", split_name, cache_dir)
            return Features(
                np.load(grid_path, mmap_mode="r"), np.load(pooled_path), image_ids, index["failed"]
            )
    grid = pooled = None
    failed: list[str] = []
    row = 0
    progress = tqdm(total=len(paths), desc=f"features {split_name}", unit="img")
    for pixels, ok in _image_stream(paths, input_size, batch_size):
        batch = pixels.numpy()
        if mirror:  # (batch, height, width, channels): reverse the width
            batch = np.ascontiguousarray(batch[:, :, ::-1])
        batch_grid, batch_pooled, _ = encoder(batch)
        if grid is None:
            regions = batch_grid.shape[1] * batch_grid.shape[2]
            grid = open_memmap(
                grid_path, "w+", np.float16, (len(paths), regions, batch_grid.shape[-1])
            )
            pooled = np.zeros((len(paths), batch_pooled.shape[-1]), np.float32)
        count = len(batch_pooled)
        grid[row : row + count] = batch_grid.reshape(count, -1, batch_grid.shape[-1])
        pooled[row : row + count] = batch_pooled
        failed += [image_ids[row + i] for i, good in enumerate(ok.numpy()) if not good]
        row += count
        progress.update(count)
    progress.close()
    if grid is None:
        raise ValueError(f"no images to extract features from for {split_name}")
    grid.flush()
    np.save(pooled_path, pooled)
    index_path.write_text(json.dumps({"image_ids": image_ids, "failed": failed}))
    if failed:
        logger.warning("%s: %d unreadable images, e.g. %s", split_name, len(failed), failed[:5])
    return Features(np.load(grid_path, mmap_mode="r"), pooled, image_ids, failed)
