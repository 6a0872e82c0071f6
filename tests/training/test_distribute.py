"""Training under tf.distribute, exercised on a CPU split into two logical devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# Logical devices must be configured before TensorFlow starts, hence a fresh process.
SCRIPT = """
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.support.fixtures import write_flickr8k
from training.config import TrainConfig
from training.train import train

base = Path(sys.argv[1])
write_flickr8k(base / "data")
manifest = train(TrainConfig(
    data_dir=base / "data", artifacts_dir=base / "artifacts", work_dir=base / "work",
    strategy="mirrored", epochs=1, min_word_count=1, embedding_dim=16, hidden_dim=32,
    batch_images=6, export_tflite=False, self_critical_epochs=1,
))
print("RESULT " + json.dumps(manifest["training"]))
"""


def test_mirrored_strategy_trains_on_two_logical_devices(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    training = json.loads(line.removeprefix("RESULT "))
    assert training["replicas"] == 2
    assert training["strategy"] == "mirrored"
    # One cross-entropy epoch on both devices, then self-critical training on a copy on one.
    assert [(r["epoch"], r["phase"]) for r in training["history"]] == [
        (1, "cross-entropy"),
        (2, "self-critical"),
    ]
    assert (tmp_path / "artifacts" / "manifest.json").is_file()
