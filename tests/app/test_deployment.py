"""The Dockerfile and compose file agree with the app's real contract.

No Docker engine runs on CI machines, so these read the files and check them against the code:
the port, the health route, every setting name, and the artifacts path.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICE = COMPOSE["services"]["captioner"]
SETTING_NAMES = {f"CAPTIONER_{name.upper()}" for name in Settings.model_fields}


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", DOCKERFILE, re.M | re.S):
        for pair in shlex.split(block.replace("\\\n", " ")):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def _routes() -> set[str]:
    return {path for path in create_app(Settings()).openapi()["paths"]}


def test_dockerfile_settings_exist_and_point_at_the_baked_model():
    env = _dockerfile_env()
    captioner = {k: v for k, v in env.items() if k.startswith("CAPTIONER_")}
    assert set(captioner) <= SETTING_NAMES, set(captioner) - SETTING_NAMES
    workdir = re.search(r"^WORKDIR (\S+)", DOCKERFILE, re.M).group(1)
    assert "COPY artifacts artifacts" in DOCKERFILE
    assert env["CAPTIONER_ARTIFACTS_DIR"] == f"{workdir}/artifacts"
    assert env["CAPTIONER_HOST"] == "0.0.0.0"  # reachable from outside the container


def test_dockerfile_port_health_user_and_command():
    port = _dockerfile_env()["CAPTIONER_PORT"]
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, re.M)
    health = re.search(r"HEALTHCHECK.*?urlopen\('http://127\.0\.0\.1:%s(/\w+)'", DOCKERFILE, re.S)
    assert health and health.group(1) in _routes()
    user = re.search(r"^USER (\S+)", DOCKERFILE, re.M).group(1)
    assert user not in ("root", "0")
    assert "app.main:app" in DOCKERFILE
    # Serving installs the project's runtime dependencies only, not the train or dev extras.
    assert "[train" not in DOCKERFILE and "[dev" not in DOCKERFILE


def test_compose_matches_the_app():
    env = SERVICE["environment"]
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
    container_port = env["CAPTIONER_PORT"]
    assert any(str(p).endswith(f":{container_port}") for p in SERVICE["ports"])
    health = " ".join(SERVICE["healthcheck"]["test"])
    path = re.search(rf"127\.0\.0\.1:{container_port}(/\w+)", health).group(1)
    assert path in _routes()
    # "SOURCE:TARGET[:ro]", where SOURCE may hold "${VAR:-default}".
    mounts = [
        v.split(":")[-2] if v.endswith((":ro", ":rw")) else v.split(":")[-1]
        for v in SERVICE["volumes"]
    ]
    assert env["CAPTIONER_ARTIFACTS_DIR"] in mounts


def test_compose_scales_and_restarts():
    assert "container_name" not in SERVICE  # `docker compose up --scale` needs generated names
    assert SERVICE["restart"] in ("always", "unless-stopped", "on-failure")
    assert SERVICE["deploy"]["resources"]["limits"]["memory"]
