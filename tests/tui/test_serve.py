"""`textual serve "python -m rlhf_tui.app"` serves the TUI to a browser on loopback: the page loads
and the app's first screen comes through its websocket. textual-dev (the `textual` command) is in
the `test` extra; users install it themselves to serve the TUI."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO

import aiohttp

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_textual_serve_shows_the_runs_screen_in_a_browser_session(tmp_path):
    textual = shutil.which("textual", path=str(Path(sys.executable).parent)) or shutil.which("textual")
    if textual is None:
        pytest.skip("no `textual` command (textual-dev)")
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([textual, "serve", "--host", "127.0.0.1", "--port", str(port),
                               f"python -m rlhf_tui.app --root {tmp_path / 'runs'}"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)

    async def browse() -> tuple[str, str]:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as response:
                        assert response.status == 200
                        page = await response.text()
                    break
                except aiohttp.ClientConnectorError:
                    assert server.poll() is None, "textual serve exited"
                    assert time.monotonic() < deadline, "textual serve did not answer in 30 s"
                    await asyncio.sleep(0.2)
            (ws_url,) = re.findall(r'data-session-websocket-url="([^"]+)"', page)
            screen = b""
            async with http.ws_connect(f"{ws_url}?width=80&height=24") as ws:
                deadline = time.monotonic() + 30
                while b"Clone & edit" not in screen and time.monotonic() < deadline:
                    try:
                        message = await ws.receive(timeout=1)
                    except asyncio.TimeoutError:
                        continue
                    if message.type == aiohttp.WSMsgType.BINARY:
                        screen += message.data
                    elif message.type != aiohttp.WSMsgType.TEXT:
                        break
                await ws.send_json(["stdin", "q"])
            return page, re.sub(" +", " ", ANSI.sub(" ", screen.decode("utf-8", "replace")))

    try:
        page, screen = asyncio.run(browse())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        log = server.communicate(timeout=15)[0].decode("utf-8", "replace")
    assert "rlhf_tui.app" in page or "textual" in page.lower()
    assert "runs under" in screen and "no runs under" in screen, (screen[-2000:], log[-2000:])
    assert "Stop run" in screen, "the footer's bindings"
