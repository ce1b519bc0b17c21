"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Why not ``--dump-dom`` with ``--virtual-time-budget``: virtual time runs ahead of the media
clock, so on a busy machine a page's timers fire before any video has played a frame (CI saw
every video at 0 s). Over the protocol the test waits in real time for what it needs, and needs
no package beyond the browser itself."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
COMMON_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--mute-audio",
    "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MB, too little for media
    "--autoplay-policy=no-user-gesture-required",
)


def browser() -> str:
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("the report's browser tests need Chromium: apt-get install chromium (.ci/run does)")


class Browser:
    """One headless Chromium with one page; ``evaluate`` runs JavaScript there (awaiting a
    returned promise) and returns its JSON value."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="vdir-chromium-")
        self._stderr = open(Path(self._profile.name) / "stderr.txt", "w+b")  # noqa: SIM115
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the protocol's fixed descriptors: the browser reads commands on 3, writes answers on 4
        spare_r, spare_w = os.dup(to_browser_r), os.dup(from_browser_w)

        def child_fds() -> None:
            os.dup2(spare_r, 3)
            os.dup2(spare_w, 4)

        self._process = subprocess.Popen(
            [
                browser(),
                *COMMON_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=child_fds,
            pass_fds=(3, 4),
        )
        for fd in (to_browser_r, from_browser_w, spare_r, spare_w):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Runtime.enable", session=True)
        self.call("Page.enable", session=True)

    # -- protocol --------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed the protocol pipe: " + self.stderr_tail())
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def open(self, url: str) -> None:
        """Navigate and wait until the page's load event has fired."""
        self.call("Page.navigate", session=True, url=url)
        self.evaluate(
            "new Promise((done) => document.readyState === 'complete' ? done(true)"
            " : window.addEventListener('load', () => done(true)))"
        )

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def page_errors(self) -> list[str]:
        """Uncaught exceptions and console.error calls seen so far."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
        return found

    def stderr_tail(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self._stderr.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def screenshot(page: Path, out: Path, width: int = 1000, height: int = 700) -> str:
    """A PNG of ``page`` by Chromium's own --screenshot; returns its stderr for messages."""
    result = subprocess.run(
        [
            browser(),
            *COMMON_FLAGS,
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stderr
