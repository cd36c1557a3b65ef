"""Fixtures for the chat page tests: Debian's chromium driven by playwright, and a real
`tensorsharp serve` on SmolLM2 serving this checkout's web/ folder."""
from __future__ import annotations

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
        # Scrollbars drawn as a user's browser draws them (headless hides them by default), so
        # tests can tell a box that visibly scrolls from one whose overflow is simply cut off.
        b = pw.chromium.launch(executable_path=str(CHROMIUM), ignore_default_args=["--hide-scrollbars"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `tensorsharp serve` subprocess on SmolLM2 (2048-token context)."""
    from tensorsharp.testing.models import model_path
    from tensorsharp.testing.server import running, serve_args

    # No API key even if the environment sets one; the page is served from this checkout.
    env = {"TENSORSHARP_API_KEY": "", "TENSORSHARP_WEB_DIR": str(WEB_DIR)}
    with running(serve_args(str(model_path("smollm2")), "--ctx", "2048"), tmp_path_factory.mktemp("serve"),
                 env=env) as base:
        yield base


@pytest.fixture(scope="session")
def web_dir() -> Path:
    return WEB_DIR


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory):
    """Base URL of a `tensorsharp serve` subprocess on a tiny random gemma3 model with a tiny random
    projector beside it (so it takes images), serving this checkout's web/ folder."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers", minversion="5")
    from tensorsharp.testing import tiny_gguf
    from tensorsharp.testing.server import running, serve_args
    from tensorsharp.testing.tiny_vision import write_tiny_projector

    d = tmp_path_factory.mktemp("vision")
    model = tiny_gguf.write_gemma3_chat_model(d / "tiny-gemma3.gguf", seed=1)
    write_tiny_projector(d / "mmproj-tiny-gemma3.gguf", n_embd_text=128, seed=2)
    env = {"TENSORSHARP_API_KEY": "", "TENSORSHARP_WEB_DIR": str(WEB_DIR), "TENSORSHARP_HOME": str(d / "home")}
    with running(serve_args(str(model), "--ctx", "256", "--threads", "1"), d, env=env) as base:
        yield base
