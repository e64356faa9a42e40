"""``logdna-client demo``: the devserver in-process and a sample app logging into it."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Mapping
from typing import Any

from ._cli_common import (
    DEFAULT_DEVSERVER_PORT,
    PROG,
    _Console,
    _self_command,
)
from ._cli_devserver import _on_signal, _restore_signal, _want_color
from ._config import ENV_VARS
from .devserver import DevServer

# -- demo ------------------------------------------------------------------------


def _demo_lines(log: logging.Logger) -> int:
    """Log what a small web shop might; return how many lines were logged."""
    log.info("shop started on port %d", 8000, extra={"version": "1.4.2", "workers": 4})
    log.debug("cache warmed", extra={"entries": 1250, "duration_ms": 84})
    log.info(
        "user %s logged in",
        "ada",
        extra={"user_id": 42, "password": "hunter2", "ip": "203.0.113.7"},
    )
    log.info(
        "order %s placed", "A-1001", extra={"order_id": "A-1001", "user_id": 42, "total": 59.9}
    )
    log.info(
        "GET /api/orders/A-1001 200",
        extra={"method": "GET", "status": 200, "duration_ms": 37},
    )
    log.warning(
        "payment provider slow: %d ms", 2350, extra={"provider": "acme-pay", "duration_ms": 2350}
    )
    log.error(
        "order %s failed: card declined",
        "A-1002",
        extra={"order_id": "A-1002", "user_id": 7, "reason": "card_declined"},
    )
    try:
        _send_receipt("A-1001")
    except ConnectionError:
        log.exception("could not send the receipt for order %s", "A-1001",
                      extra={"order_id": "A-1001"})  # fmt: skip
    return 8


def _send_receipt(order_id: str) -> None:
    raise ConnectionError(f"smtp.example.com:587 refused the connection (order {order_id})")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._handler import LogDNAHandler  # noqa: PLC0415 - only this command needs it

    console: _Console = args.console
    out = console.out
    color = _want_color(args.color, out)
    bold, dim, reset = ("\x1b[1m", "\x1b[2m", "\x1b[0m") if color else ("", "", "")
    server = DevServer(out=out, color=color)
    try:
        server.start()
    except OSError as exc:
        console.warn(f"{PROG} demo: cannot start the local server: {exc}")
        return 1
    log = logging.getLogger("shop")
    handler: logging.Handler | None = None
    try:
        console.say(f"{bold}logdna_client demo{reset}", flush=True)
        console.say(f"  A local ingest server is listening on {server.url}")
        console.say(
            '  Logging 8 lines through logging.getLogger("shop") with\n'
            f'  LogDNAHandler(url="{server.url}", app="demo", env="local", '
            'hostname="demo-host")'
        )
        legend = f"{dim}(time, level, host [app], line, meta, (env)){reset}"
        console.say(f"\n{bold}What the server received{reset} {legend}", flush=True)
        lhandler = handler = LogDNAHandler(
            url=server.url, app="demo", env="local", hostname="demo-host"
        )
        log.setLevel(logging.DEBUG)
        log.propagate = False  # the demo's lines go to the server only, not to the console
        log.addHandler(lhandler)
        sent = _demo_lines(log)
        delivered = lhandler.client.flush(timeout=10.0)
        arrived_all = server.wait_for_lines(sent, timeout=5.0)
        stats = lhandler.client.stats()
        arrived = server.line_count
        requests = [r for r in server.requests if r.status == 200]
        lines = server.lines
        _demo_summary(console, (bold, reset), sent, arrived, requests, stats, lines)
        if args.open:
            _demo_live(console, server, log, (bold, reset))
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        server.stop()
    if not (delivered and arrived_all and arrived >= sent):
        console.warn(f"{PROG} demo: {sent - arrived} of {sent} lines did not arrive")
        return 1
    return 0


def _demo_summary(
    console: _Console,
    style: tuple[str, str],
    sent: int,
    arrived: int,
    requests: list[Any],
    stats: Mapping[str, Any],
    lines: list[dict[str, Any]],
) -> None:
    bold, reset = style
    console.say(f"\n{bold}Summary{reset}")
    gzip = " gzip-compressed" if requests and all(r.gzip for r in requests) else ""
    console.say(
        f"  {sent} lines sent, {arrived} arrived in {len(requests)}{gzip} request(s); stats: "
        f"sent={stats.get('sent')} retries={stats.get('retries')} "
        f"dropped={stats.get('dropped_total')} bytes_sent={stats.get('bytes_sent')}"
    )
    notes = []
    for line in lines:
        meta = line.get("meta")
        if isinstance(meta, dict) and "password" in meta:
            notes.append(f"the password in extra= arrived as {meta['password']}")
        if "Traceback" in str(line.get("line", "")):
            notes.append("log.exception() shipped the traceback with its line")
    notes.append("every extra= field arrived as searchable meta")
    for note in notes:
        console.say(f"  - {note}")
    console.say(
        f"\n  Next: run '{_self_command()} devserver' and point your app at it with\n"
        f"  {ENV_VARS['url']}=http://127.0.0.1:{DEFAULT_DEVSERVER_PORT}/logs/ingest",
        flush=True,
    )


# What the demo keeps logging while the page is open, so the tail moves.
_LIVE_LINES: list[tuple[int, str, dict[str, Any]]] = [
    (logging.INFO, "GET /api/orders 200", {"method": "GET", "status": 200, "duration_ms": 21}),
    (logging.DEBUG, "cache hit", {"key": "orders:42"}),
    (logging.INFO, "POST /api/cart 201", {"method": "POST", "status": 201, "duration_ms": 48}),
    (logging.WARNING, "slow query: %d ms", {"table": "orders", "duration_ms": 812}),
    (logging.INFO, "GET /health 200", {"method": "GET", "status": 200, "duration_ms": 1}),
    (logging.ERROR, "payment declined", {"order_id": "A-1003", "reason": "insufficient_funds"}),
]


def _demo_live(
    console: _Console, server: DevServer, log: logging.Logger, style: tuple[str, str]
) -> None:
    """Keep the server up with a line now and then, until Ctrl-C or SIGTERM."""
    import webbrowser  # noqa: PLC0415 - only --open needs it

    bold, reset = style
    stop = threading.Event()
    previous = {
        signum: _on_signal(signum, lambda signum, frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        console.say(
            f"\n{bold}Live tail in your browser:{reset} {server.page_url}\n"
            "  The demo keeps logging a line every second. Ctrl-C to stop.",
            flush=True,
        )
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(server.page_url)
        n = 0
        while not stop.wait(1.0):
            level, text, meta = _LIVE_LINES[n % len(_LIVE_LINES)]
            args = (meta["duration_ms"],) if "%" in text else ()
            log.log(level, text, *args, extra=meta)
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            _restore_signal(signum, handler)
