"""The OpenAPI page in a real headless browser: ``/docs`` must render Swagger UI's operations on a
machine without internet (bank networks, this CI), so its script and style must come from the
service itself, never from a CDN.

The app runs under a real uvicorn on a free loopback port; Debian's ``chromium`` loads the page,
runs its JavaScript and dumps the rendered DOM (and a screenshot, to check it is not blank).
No chromium is a failure, never a skip: ``.ci/browser`` installs it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from txguard.api.app import create_app
from txguard.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app (services built by its lifespan on a temp home) served by uvicorn."""
    home = tmp_path_factory.mktemp("docs-browser")
    app = create_app(Settings(home=home))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(  # the HTTP protocol `txguard serve` runs (api.http)
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            http="txguard.api.http:OneWriteHttpToolsProtocol",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: the page tests need Debian's chromium "
            "(install it with `bash .ci/browser`)",
            pytrace=False,
        )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False
    )


def test_docs_page_refers_only_to_its_own_assets(base_url: str) -> None:
    """Every script, style and icon of /docs is a same-origin path that answers without
    credentials — true whether or not this machine could reach a CDN."""
    page = httpx.get(f"{base_url}/docs", timeout=10)
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(refs) >= 3, refs  # bundle JS, CSS, favicon
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), f"/docs loads {ref} off-site"
        asset = httpx.get(base_url + ref, timeout=10)
        assert asset.status_code == 200, f"{ref} -> {asset.status_code}"
        assert len(asset.content) > 1000, f"{ref} is suspiciously small"
    assert httpx.get(f"{base_url}/docs/assets/..%2Fcore.py", timeout=10).status_code == 404


def test_docs_renders_operations_in_headless_chromium(base_url: str, tmp_path: Path) -> None:
    run = _chromium(tmp_path / "profile", "--dump-dom", f"{base_url}/docs")
    assert run.returncode == 0, f"chromium exited {run.returncode}: {run.stderr[-2000:]}"
    dom = run.stdout
    assert "swagger-ui" in dom, dom[:2000]
    # Swagger UI builds one .opblock per operation from /openapi.json; the raw page has none.
    assert dom.count('class="opblock ') >= 5, f"no operations rendered:\n{dom[:3000]}"
    for path in ("/v1/score", "/v1/audit", "/health"):
        assert f'data-path="{path}"' in dom, f"{path} missing from the rendered page"
    assert "txguard" in dom


def test_docs_screenshot_is_not_blank(base_url: str, tmp_path: Path) -> None:
    """The original failure was a blank white page: the screenshot must show drawn content."""
    import matplotlib.image as mpimg

    shot = tmp_path / "docs.png"
    run = _chromium(
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        f"{base_url}/docs",
    )
    assert run.returncode == 0, f"chromium exited {run.returncode}: {run.stderr[-2000:]}"
    assert shot.is_file(), f"no screenshot written: {run.stderr[-2000:]}"
    pixels = np.asarray(mpimg.imread(shot))[..., :3]
    assert pixels.shape[:2] == (1600, 1280)
    white = np.all(pixels > 0.97, axis=-1).mean()
    rgb = (pixels * 255).astype(np.uint32).reshape(-1, 3)
    colours = len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))
    # A blank page is ~100 % white with one colour; Swagger UI draws text and coloured blocks.
    assert white < 0.95, f"screenshot {shot} is {white:.1%} white"
    assert colours > 50, f"screenshot {shot} has only {colours} colours"
