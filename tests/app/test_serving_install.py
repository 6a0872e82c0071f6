"""The Docker image's contents, proved without Docker: a fresh virtualenv gets exactly the
requirement file the Dockerfile installs, a folder gets exactly what the Dockerfile copies, and
the app starts from them, TensorFlow absent, and captions a photo over HTTP. Then the project
itself goes into that virtualenv (`pip install .`, whose dependencies are that same file), and its
`captioner caption photo.jpg` prints the photo's JSON line."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import jpeg_bytes, random_photo

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# The acceptance bound for the serving install (the full training install is about 1.7 GB).
MAX_SERVING_VENV_MB = 450
READY_TIMEOUT_S = 120


def dockerfile_requirements() -> Path:
    """The requirement file the image installs: `RUN pip install -r FILE`."""
    found = re.findall(r"^RUN pip install -r (\S+)$", DOCKERFILE, re.M)
    assert len(found) == 1, "the Dockerfile installs one requirement file"
    return ROOT / found[0]


def dockerfile_copies() -> list[str]:
    """The folders `COPY name name` puts into the image's working directory."""
    return [source for source, target in re.findall(r"^COPY (\S+) (\S+)$", DOCKERFILE, re.M)
            if source == target]  # fmt: skip


def project_source(folder: Path) -> Path:
    """What `pip install .` reads, copied aside: the build then writes nothing into the repo."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    folder.mkdir(parents=True)
    for name in ("pyproject.toml", "requirements-serve.txt", pyproject["project"]["readme"]):
        shutil.copy2(ROOT / name, folder / name)
    for name in packages:
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / (
        1024 * 1024
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_image_copies_serving_code_only() -> None:
    copies = dockerfile_copies()
    assert {"app", "captioning", "artifacts"} <= set(copies)
    assert "training" not in copies and "benchmarks" not in copies
    lines = dockerfile_requirements().read_text().lower().splitlines()
    requirements = " ".join(line for line in lines if not line.startswith("#"))
    for package in ("tensorflow", "keras", "efficientnet", "pycocoevalcap", "torch"):
        assert package not in requirements, package


@pytest.mark.timeout(1200)
def test_a_fresh_serving_install_serves_without_tensorflow(tmp_path: Path) -> None:
    venv, image = tmp_path / "venv", tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(dockerfile_requirements())],
        check=True, timeout=900,
    )  # fmt: skip
    install_s = time.perf_counter() - started
    for name in dockerfile_copies():
        shutil.copytree(ROOT / name, image / name, ignore=shutil.ignore_patterns("__pycache__"))

    for package in ("tensorflow", "keras"):
        absent = subprocess.run(
            [str(python), "-c", f"import {package}"], capture_output=True, timeout=60, cwd=image
        )
        assert absent.returncode != 0, f"{package} is importable in the serving virtualenv"

    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CAPTIONER_ARTIFACTS_DIR": str(image / "artifacts"),
    }
    server = subprocess.Popen(
        [str(python), "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=image, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        ready_s = _wait_ready(base, server)
        photo = jpeg_bytes(random_photo(320, 240, seed=3), quality=90)
        response = httpx.post(
            f"{base}/caption", files={"file": ("photo.jpg", photo, "image/jpeg")}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["caption"].strip()
    finally:
        server.terminate()
        server.communicate(timeout=60)

    size_mb = folder_mb(venv)
    logger.info(
        "serving virtualenv: %.0f MB (pip install %.0f s); app ready %.1f s after start; "
        "caption %r",
        size_mb, install_s, ready_s, response.json()["caption"],
    )  # fmt: skip
    assert size_mb < MAX_SERVING_VENV_MB

    # `pip install .` on top: nothing new to download, and the `captioner` command appears.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(project_source(tmp_path / "source"))],
        check=True, timeout=600,
    )  # fmt: skip
    (image / "photo.jpg").write_bytes(photo)
    done = subprocess.run(
        [str(venv / "bin" / "captioner"), "caption", "photo.jpg"],
        cwd=image, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.splitlines()
    row = json.loads(line)
    assert row["image"] == "photo.jpg" and row["caption"].strip(), row
    logger.info("captioner caption photo.jpg: %s", line)


def _wait_ready(base: str, server: subprocess.Popen) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if server.poll() is not None:
            pytest.fail(f"the server exited ({server.returncode}): {server.stdout.read()[-3000:]}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the server was not ready within {READY_TIMEOUT_S} s")
