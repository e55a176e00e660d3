"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): no
websocket, no pip package, only the standard library and the Debian ``chromium`` package.

``find_chromium`` finds the browser (installing the Debian package with apt when it is missing and we
may); :class:`Browser` opens pages, evaluates JavaScript, takes screenshots and collects every console
error, uncaught exception and failed load.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(*, install: bool = True) -> tuple[str | None, str]:
    """The path of a Chromium binary, installing Debian's ``chromium`` with apt if none is found.

    Args:
        install: Whether to try ``apt-get install chromium`` (only as root with apt-get available).

    Returns:
        ``(path, "")``, or ``(None, why)`` when there is none and it cannot be installed.
    """
    env = os.environ.get("FEATCACHE_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env), ""
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found, ""
    if not install:
        return None, "no chromium binary on PATH"
    if not shutil.which("apt-get"):
        return None, "no chromium binary on PATH and no apt-get to install Debian's chromium package"
    if os.geteuid() != 0:
        return None, "no chromium binary on PATH; install it as root: apt-get install -y chromium"
    env_vars = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            res = subprocess.run(cmd, env=env_vars, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"`{' '.join(cmd)}` failed: {e}"
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
            return None, f"`{' '.join(cmd)}` failed (exit {res.returncode}): {tail[0]}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get installed chromium but no binary is on PATH")


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol on a pipe.

    Args:
        binary: The Chromium binary.
        width: Viewport width in pixels.
        height: Viewport height in pixels.
        timeout: Seconds to wait for any one answer.
    """

    def __init__(self, binary: str, *, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.errors: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="featcache-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # chromium reads commands on fd 3 and writes answers on fd 4
        child_in, child_out = os.dup(to_chrome_r), os.dup(from_chrome_w)

        def fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe",
                f"--window-size={width},{height}", f"--user-data-dir={self._profile}", "about:blank"]
        self._proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_chrome_r, from_chrome_w, child_in, child_out):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # -- protocol --------------------------------------------------------------------------------

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._from_chrome], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg = json.loads(raw)
        if "method" in msg:
            self._on_event(msg)
        return msg

    def _on_event(self, msg: dict[str, Any]) -> None:
        self._events.append(msg)
        method, params = msg["method"], msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                            for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}".strip())

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its answer.

        Returns:
            The ``result`` object.

        Raises:
            RuntimeError: The command failed or timed out.
        """
        self._id += 1
        mine = self._id
        msg: dict[str, Any] = {"id": mine, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._read(deadline)
            if got is None:
                raise RuntimeError(f"{method}: no answer within {self.timeout} s")
            if got.get("id") == mine:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """:meth:`call` on the page's session."""
        return self.call(method, session=True, **params)

    def wait_event(self, method: str) -> dict[str, Any]:
        """Wait for the next event named ``method`` (events already received count)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for k, e in enumerate(self._events):
                if e["method"] == method:
                    del self._events[: k + 1]
                    return e
            if self._read(deadline) is None:
                raise RuntimeError(f"no {method} within {self.timeout} s")

    # -- page ------------------------------------------------------------------------------------

    def open(self, path: Path) -> None:
        """Load a local file and wait for its load event."""
        self._events.clear()
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value.

        Raises:
            RuntimeError: The expression threw.
        """
        res = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise RuntimeError(f"{expression[:80]}...: {d.get('exception', {}).get('description') or d.get('text')}")
        return res.get("result", {}).get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the browser and remove its profile."""
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
