"""Security properties, checked on the running app and on the source tree.

- Uploads never reach the file system, least of all under a name the client chose, and the
  client's filename is never echoed back.
- No unrestricted deserialisation: no pickle but the two restricted unpicklers, `.keras` files
  only with `safe_mode=True`.
- The container does not run as root.
- Error messages carry no absolute paths and no tracebacks, whatever the input.
"""

from __future__ import annotations

import ast
import io
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.apps import fake_model_app
from tests.support.predictors import FakePredictor

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("app", "captioning", "training", "benchmarks")
# The only classes allowed to unpickle, each refusing every global outside a short allow-list.
RESTRICTED_UNPICKLERS = {
    ("captioning/text.py", "_PlainDataUnpickler"),
    ("training/modeling/encoders/torch_legacy.py", "_RestrictedUnpickler"),
}
# An absolute file path: a slash not preceded by a word character, then at least two parts.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]+")
HOSTILE_NAMES = (
    "../../etc/x",
    "/tmp/captioner-evil.jpg",
    "..\\..\\windows\\evil.jpg",
    "<script>alert(1)</script>.jpg",
    "name\r\nX-Injected: 1.jpg",
)


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


# --- uploads and the file system ------------------------------------------------------------------

# Python's audit hooks see every open(), os.open(), rename and mkdir in the process, whichever
# library makes them. A hook cannot be removed, so it records only while `_recording` is a list.
_recording: list[tuple[str, str, str]] | None = None
_recording_lock = threading.Lock()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    if _recording is None:
        return
    if event == "open":
        path, mode, flags = (*args, None, None)[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        with _recording_lock:
            _recording.append((event, str(path), "write" if writes else "read"))
    elif event in ("os.rename", "os.mkdir", "os.symlink", "os.link", "shutil.copyfile"):
        with _recording_lock:
            _recording.append((event, str(args[0]), "write"))


sys.addaudithook(_audit)


@pytest.fixture
def file_events() -> Iterator[list[tuple[str, str, str]]]:
    global _recording
    events: list[tuple[str, str, str]] = []
    _recording = events
    try:
        yield events
    finally:
        _recording = None


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = fake_model_app(
        tmp_path_factory.mktemp("artifacts"), max_batch_wait_ms=0, max_upload_bytes=2 * 1024 * 1024
    )
    with TestClient(app) as test_client:
        yield test_client


def _listing(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in folder.iterdir()}
    except OSError:
        return set()


def _distinctive_parts(name: str) -> set[str]:
    """The name without its leading dots and slashes, and its parts long enough to be telling
    (a bare "x" or "etc" is in many innocent paths and texts)."""
    return {name.lstrip("./\\"), *(part for part in re.split(r"[\\/]", name) if len(part) > 4)}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_uploads_never_touch_the_file_system(
    client: TestClient, file_events: list[tuple[str, str, str]], name: str
) -> None:
    watched = [Path.cwd(), Path.cwd().parent, Path(tempfile.gettempdir()), Path("/etc")]
    before = {folder: _listing(folder) for folder in watched}
    large = os.urandom(1_500_000)  # over Starlette's 1 MiB spooling threshold: still in memory
    responses = [
        client.post("/caption", files={"file": (name, jpeg(), "image/jpeg")}),
        client.post("/caption", files={"file": (name, large, "image/jpeg")}),
        client.post(
            "/captions",
            files=[("files", (name, jpeg(), "image/jpeg")), ("files", (name, b"x", "image/png"))],
        ),
    ]
    assert [r.status_code for r in responses] == [200, 415, 200]
    writes = [event for event in file_events if event[2] == "write"]
    assert writes == [], f"the request wrote to the file system: {writes}"
    fragments = _distinctive_parts(name)
    touched = [event for event in file_events if any(f in event[1] for f in fragments)]
    assert touched == [], touched
    assert {folder: _listing(folder) for folder in watched} == before
    assert not Path("/etc/x").exists()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_client_filename_is_never_echoed(client: TestClient, name: str) -> None:
    texts = [
        client.post("/caption", files={"file": (name, jpeg(), "image/jpeg")}).text,
        client.post("/caption", files={"file": (name, b"not an image", "image/jpeg")}).text,
        client.post("/caption", files={"file": (name, b"", "image/jpeg")}).text,
        client.post("/caption", files={"wrong": (name, jpeg(), "image/jpeg")}).text,
        client.post("/captions", files=[("files", (name, b"GIF89a", "image/gif"))]).text,
    ]
    for text in texts:
        for fragment in _distinctive_parts(name) | {"<script>", "X-Injected"}:
            assert fragment not in text, text


# --- deserialisation ------------------------------------------------------------------------------


def _python_files() -> Iterator[tuple[str, ast.Module]]:
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


UNSAFE_LOADERS = {
    "pickle.load",
    "pickle.loads",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "torch.load",
    "marshal.loads",
    "shelve.open",
    "yaml.load",
    "yaml.unsafe_load",
}


def test_no_unrestricted_unpickling_in_the_source_tree() -> None:
    findings, unpicklers = [], set()
    for relative, tree in _python_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in UNSAFE_LOADERS:
                    findings.append(f"{relative}:{node.lineno} {name}()")
                if name in ("np.load", "numpy.load") and not (
                    _keyword(node, "allow_pickle") is None
                    or (
                        isinstance(_keyword(node, "allow_pickle"), ast.Constant)
                        and _keyword(node, "allow_pickle").value is False
                    )
                ):
                    findings.append(f"{relative}:{node.lineno} {name}(allow_pickle=...)")
            if isinstance(node, ast.ClassDef) and any(
                _dotted(base).endswith("Unpickler") for base in node.bases
            ):
                unpicklers.add((relative, node.name))
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                assert "find_class" in methods, f"{relative}:{node.name} resolves any global"
    assert findings == [], "unrestricted deserialisation: " + ", ".join(findings)
    assert unpicklers == RESTRICTED_UNPICKLERS


def test_keras_files_are_loaded_in_safe_mode() -> None:
    calls = []
    for relative, tree in _python_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras"):
                imported = {alias.name for alias in node.names}
                assert "load_model" not in imported, f"{relative}:{node.lineno}: call it dotted"
            if isinstance(node, ast.Call) and _dotted(node.func).endswith(
                ("saving.load_model", "models.load_model")
            ):
                calls.append(f"{relative}:{node.lineno}")
                assert _is_true(_keyword(node, "safe_mode")), (
                    f"{relative}:{node.lineno} loads a Keras model without safe_mode=True"
                )
    assert any(call.startswith("training/modeling/bundle.py") for call in calls), calls


# --- the container --------------------------------------------------------------------------------


def test_the_container_runs_as_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_stage = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    users = [line.split()[1] for line in lines[last_stage:] if line.upper().startswith("USER ")]
    assert users, "the final stage has no USER instruction: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users


# --- error messages -------------------------------------------------------------------------------


def _assert_clean_error(response: httpx.Response, *, status: int | None = None) -> None:
    if status is not None:
        assert response.status_code == status, response.text
    assert response.status_code >= 400
    body = response.json()
    message = body["error"]["message"]
    assert body["error"]["code"] and message
    text = response.text
    for marker in ("Traceback", 'File "', ".py", "site-packages", str(REPO), "secret"):
        assert marker not in text, text
    assert not ABSOLUTE_PATH.search(message), message


def test_error_messages_have_no_paths_or_tracebacks(client: TestClient) -> None:
    not_multipart = "application/json"
    broken = "multipart/form-data; boundary=abc"
    cases = [
        client.get("/nowhere/../../etc/passwd"),
        client.delete("/caption"),
        client.post("/caption", content=b"{}", headers={"content-type": not_multipart}),
        client.post("/caption", content=b"--abc\r\nbroken", headers={"content-type": broken}),
        client.post("/caption", content=b"x", headers={"content-type": "multipart/form-data"}),
        client.post("/caption?beam_size=99", files={"file": ("a.jpg", jpeg(), "image/jpeg")}),
        client.post("/caption?max_length=-1", files={"file": ("a.jpg", jpeg(), "image/jpeg")}),
        client.post("/caption", data={"attention": "maybe"}, files={"file": ("a", jpeg())}),
        client.post("/caption", files={"file": ("a.jpg", b"\xff\xd8\xff" + b"\0" * 64)}),
        client.post("/caption", files={"file": ("a.jpg", b"")}),
        client.post("/caption", files={"other": ("a.jpg", jpeg())}),
        client.post("/caption", files={"file": ("a.jpg", os.urandom(3 * 1024 * 1024))}),
        client.post("/captions", files=[("files", ("a.jpg", jpeg()))] * 17),
        client.post("/caption", content=b"x" * 10, headers={"content-length": "nonsense"}),
    ]
    for response in cases:
        _assert_clean_error(response)


@pytest.mark.parametrize("fault", ["encode", "generate", "manifest"])
def test_internal_failures_are_reported_without_internals(tmp_path: Path, fault: str) -> None:
    """The fake model's failures mention /srv/secret/... paths: none may reach the client."""
    predictor = FakePredictor(
        fail_encode=fault == "encode",
        fail_generate=(lambda options: True) if fault == "generate" else None,
    )
    with TestClient(fake_model_app(tmp_path, predictor, max_batch_wait_ms=0)) as failing:
        if fault == "manifest":
            predictor.broken_manifest = True
            _assert_clean_error(failing.get("/model"), status=500)
        else:
            _assert_clean_error(
                failing.post("/caption", files={"file": ("a.jpg", jpeg())}), status=500
            )
            entry = failing.post("/captions", files=[("files", ("a.jpg", jpeg()))]).json()
            message = entry["results"][0]["error"]["message"]
            assert "secret" not in message and not ABSOLUTE_PATH.search(message)
