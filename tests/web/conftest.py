"""Fixtures for the chat page tests: Debian's chromium driven by playwright, and a real
`tensorsharp serve` on SmolLM2 serving this checkout's web/ folder."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"   # git-ignored


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian: apt-get install chromium); the page tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the page tests need the playwright package")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `tensorsharp serve` subprocess on SmolLM2 (2048-token context)."""
    from tensorsharp.testing.models import model_path

    model = model_path("smollm2")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TENSORSHARP_API_KEY"}
    env["TENSORSHARP_WEB_DIR"] = str(WEB_DIR)
    exe = shutil.which("tensorsharp", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from tensorsharp.cli import main; sys.exit(main())"]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as out:
        # cwd outside the checkout, so the installed package (with its kernels) is the one imported.
        proc = subprocess.Popen(cmd + ["serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                                       "--ctx", "2048"],
                                cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tensorsharp serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if _get_json(base + "/health").get("status") == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorsharp serve did not come up in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def web_dir() -> Path:
    return WEB_DIR


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
