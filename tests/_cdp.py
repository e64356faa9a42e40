"""A tiny Chrome DevTools Protocol client: headless Chromium driven over a websocket.

Standard library only. Chromium itself comes from the system packages
(``apt-get install chromium``; ``.ci/run`` installs it when missing), so the
browser tests need no driver binary and download nothing at run time. The
protocol calls used here are few: navigate, evaluate JavaScript, press keys,
take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
_START_TIMEOUT = 30.0


class BrowserError(Exception):
    """The browser could not be started, or a protocol call failed."""


def find_browser() -> str | None:
    """The path of a Chromium-like browser on PATH (``CHROMIUM`` wins), or None."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return shutil.which(chosen) or chosen
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _WebSocket:
    """Just enough RFC 6455 for CDP: masked text frames out, whole messages in."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname, parts.port or 80), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"websocket handshake refused: {head[:80]!r}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise BrowserError("the browser closed the connection")
        self._buffer += chunk

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(head + mask + masked)

    def receive(self) -> bytes:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            if opcode == 0x8:
                raise BrowserError("the browser closed the websocket")
            if opcode in (0x9, 0xA):  # ping / pong: Chromium does not send them unasked
                continue
            message += payload
            if first & 0x80:
                return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class Page:
    """One browser tab, driven through CDP."""

    def __init__(
        self, ws_url: str, timeout: float, on_close: Callable[[], None] | None = None
    ) -> None:
        # The socket waits longer than any wait_for, so a slow page is reported
        # by wait_for's own message, not by a socket timeout.
        self._ws = _WebSocket(ws_url, 2 * timeout + 10)
        self._next_id = 0
        self._lock = threading.Lock()
        self.timeout = timeout
        self._on_close = on_close

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one protocol command and return its result.

        Raises:
            BrowserError: The browser answered with an error.
        """
        with self._lock:
            self._next_id += 1
            call_id = self._next_id
            self._ws.send(
                orjson.dumps({"id": call_id, "method": method, "params": params}).decode()
            )
            while True:
                message = orjson.loads(self._ws.receive())
                if message.get("id") != call_id:
                    continue  # an event we did not ask for
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited).

        Raises:
            BrowserError: The expression threw.
        """
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value.

        The polling happens inside the page (one protocol call), so the page's
        own event loop decides when it is true.

        Raises:
            BrowserError: Not true within ``timeout`` seconds.
        """
        limit_ms = int(1000 * (self.timeout if timeout is None else timeout))
        script = (
            f"new Promise((resolve) => {{ const end = performance.now() + {limit_ms};"
            f" const check = () => {{ let v; try {{ v = ({expression}); }}"
            " catch (e) { v = undefined; }"
            " if (v || performance.now() > end) resolve({ok: !!v, value: v});"
            " else setTimeout(check, 20); }; check(); })"
        )
        outcome = self.evaluate(script)
        if not outcome["ok"]:
            raise BrowserError(f"not true within {limit_ms} ms: {expression}")
        return outcome["value"]

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait until its scripts ran."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def key(self, key: str, code: str | None = None, text: str | None = None) -> None:
        """Press and release one key, as a user would (trusted key events)."""
        params: dict[str, Any] = {"key": key, "code": code or key}
        if text is not None:
            params["text"] = text
        self.call("Input.dispatchKeyEvent", type="keyDown", **params)
        self.call("Input.dispatchKeyEvent", type="keyUp", **params)

    def type_text(self, text: str) -> None:
        """Type ``text`` into whatever has the focus."""
        self.call("Input.insertText", text=text)

    def screenshot(self, width: int, height: int) -> bytes:
        """A PNG of the page at ``width`` x ``height`` CSS pixels."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        """Close the tab (its page stops, event streams included) and the connection."""
        self._ws.close()
        if self._on_close is not None:
            with contextlib.suppress(OSError):
                self._on_close()


class Browser:
    """A headless Chromium process with its own throwaway profile."""

    def __init__(self, path: str, timeout: float = 20.0) -> None:
        self.timeout = timeout
        #: The browser's throwaway profile folder; its processes name it.
        self.profile = tempfile.mkdtemp(prefix="logdna-cdp-")
        args = [
            path,
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            self._endpoint = self._wait_for_endpoint()
        except BaseException:
            self.close()
            raise

    def _wait_for_endpoint(self) -> str:
        assert self._proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line:
                raise BrowserError(f"the browser exited: {seen[-500:]!r}")
            seen += line
            match = _LISTENING.search(line)
            if match:
                # Keep reading its stderr so a chatty browser never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return match.group(1).decode()
        raise BrowserError("the browser did not start in time")

    def _drain(self) -> None:
        assert self._proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while self._proc.stderr.read(65536):
                pass

    def new_page(self) -> Page:
        """Open a blank tab and connect to it."""
        base = "http://" + urlsplit(self._endpoint).netloc
        request = urllib.request.Request(base + "/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            target = orjson.loads(response.read())

        def close_tab() -> None:
            closing = urllib.request.Request(f"{base}/json/close/{target['id']}")
            with urllib.request.urlopen(closing, timeout=self.timeout) as answer:
                answer.read()

        return Page(target["webSocketDebuggerUrl"], self.timeout, close_tab)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr is not None:
            with contextlib.suppress(OSError):
                self._proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.contextmanager
def browser(timeout: float = 20.0) -> Iterator[Browser]:
    """A started headless browser, closed afterwards.

    Raises:
        BrowserError: No Chromium on PATH, or it did not start.
    """
    path = find_browser()
    if path is None:
        raise BrowserError("no Chromium found; install the 'chromium' package")
    started = Browser(path, timeout)
    try:
        yield started
    finally:
        started.close()
