"""``logdna-client pipe``: a command's output (or stdin) passed through and shipped."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import IO, TextIO

from ._cli_common import (
    _AFTER_EXIT_QUIET,
    _MAX_PENDING_LINE,
    _READ_SIZE,
    PROG,
    _Console,
)
from ._cli_devserver import _on_signal, _restore_signal, _SignalHandler
from ._cli_send import _client_from, _deliver, _explain, _say_what_close_left, _watch_library
from ._client import Client
from ._threads import start_library_thread


class _StreamPump(threading.Thread):
    """Copies one byte stream to another unchanged and ships each complete line.

    Started by ``start_library_thread``: a SIGTERM, SIGHUP or Ctrl-C sent to ``pipe`` then
    lands on the main thread, whose handlers pass it on or stop reading at once.
    """

    def __init__(
        self,
        source: IO[bytes] | int,
        sink: IO[bytes] | None,
        ship: Callable[[str], None],
        name: str,
    ) -> None:
        super().__init__(name=f"logdna-client-pipe-{name}", daemon=True)
        self._fd = source if isinstance(source, int) else source.fileno()
        self._sink = sink
        self._ship = ship
        #: When the last chunk was dealt with; None while one is being dealt with.
        self.idle_since: float | None = time.monotonic()
        self._pending = b""  # a line begun, not ended yet
        # Held while a chunk's lines are shipped; ``stop`` waits for the one in hand.
        self._hand = threading.Lock()
        self._done = False

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except InterruptedError:
                continue
            except BlockingIOError:
                # Input left non-blocking by whoever shares it (node, ssh): no data yet,
                # not its end (H192: taken for the end, pipe read nothing).
                _wait_for(self._fd, readable=True)
                continue
            except OSError:
                chunk = b""
            with self._hand:
                if self._done:
                    # Read once pipe was done delivering: shown, it would be a line
                    # seen on our output and never delivered. Neither, then.
                    return
                if not chunk:
                    self._ship_no_more()  # a last line without a newline still ships
                    return
                self.idle_since = None
                self._ship_chunk(chunk)
            # Shown only once its complete lines are queued: whoever sees a line on
            # our output and then stops us (SIGTERM, Ctrl-C) knows it still ships.
            self._pass_through(chunk)
            self.idle_since = time.monotonic()

    def stop(self) -> None:
        """Ship nothing more: once the chunk in hand is shipped, ship what it left of
        a line (it may be on our output already), and leave what comes after unread."""
        with self._hand:
            self._ship_no_more()

    def _ship_no_more(self) -> None:
        if not self._done:
            self._done = True
            if self._pending:
                self._ship_raw(self._pending)

    def _ship_chunk(self, chunk: bytes) -> None:
        pending = self._pending + chunk
        if b"\n" in pending:
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                self._ship_raw(raw)
        while len(pending) > _MAX_PENDING_LINE:
            self._ship_raw(pending[:_MAX_PENDING_LINE])
            pending = pending[_MAX_PENDING_LINE:]
        self._pending = pending

    def quiet_for(self, seconds: float, since: float) -> bool:
        """Whether nothing arrived for ``seconds`` after ``since`` (and nothing is in hand)."""
        idle = self.idle_since
        return idle is not None and time.monotonic() - max(idle, since) >= seconds

    def _pass_through(self, chunk: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            _write_all(sink, chunk)
        except (OSError, ValueError):
            self._sink = None  # our output is closed (| head): keep shipping

    def _ship_raw(self, raw: bytes) -> None:
        text = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        if text.strip():
            self._ship(text)


def _write_all(sink: IO[bytes], chunk: bytes) -> None:
    """Write and flush ``chunk``, waiting where ``sink`` is non-blocking and its reader
    is behind, as a blocking one waits (H192: the BlockingIOError was taken for a closed
    output, and the echo stopped for good after 1,009 of 20,000 lines)."""
    data = memoryview(chunk)
    while True:
        try:
            while data:
                written = sink.write(data)
                if written is None:  # (an unbuffered non-blocking one: nothing taken)
                    _wait_for(sink.fileno(), readable=False)
                    continue
                data = data[written:]
            sink.flush()
            return
        except BlockingIOError as exc:
            data = data[exc.characters_written :]  # (taken into the buffer)
            _wait_for(sink.fileno(), readable=False)


def _wait_for(fd: int, *, readable: bool) -> None:
    """Until ``fd`` is readable (or writable); a while at most, then the caller tries."""
    with contextlib.suppress(OSError, ValueError):
        select.select([fd] if readable else [], [] if readable else [fd], [], 1.0)


def _binary(stream: TextIO) -> IO[bytes] | None:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else None


def _terminal_delivers_sigint() -> bool:
    """Whether Ctrl-C on our terminal (and its hangup) reaches the child by itself (same
    foreground group)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _cmd_pipe(args: argparse.Namespace) -> int:
    argv: list[str] = args.argv
    delivered = True
    if not argv and sys.stdin is None:  # started with stdin closed (<&-)
        args.console.warn(f"{PROG} pipe: standard input is closed: nothing to read "
                          "(give the command to run after --)")  # fmt: skip
        return 2
    ending = _Ending()
    with _watch_library() as trouble:
        client = _client_from(args)
        try:
            if argv:
                status = _pipe_command(
                    argv, client, args.stdout_level, args.stderr_level, args.console, ending
                )
            else:
                status = _pipe_stdin(client, args.stdout_level, ending)
            try:
                with ending.waiting():
                    delivered = _deliver(client, trouble, args.timeout)
                if not delivered:
                    args.console.warn(_explain("pipe", client, trouble, args.timeout))
            except _StopWaiting:  # a second signal: the status says the first already
                args.console.warn(f"{PROG} pipe: stopped again before the lines were delivered")
        finally:
            client.close(timeout=0.0)
        if _say_what_close_left("pipe", client, trouble, args.console, drops=True):
            delivered = False  # (flush() sees only the drops while it waits)
    if not delivered and not argv and status == 0:
        status = 1
    # The status is decided and said: a stop signal from here on could only replace it
    # (the interpreter's exit puts the defaults back, which end the process by it). Not
    # where main() was called in a process of its own (a test's): its handlers come back.
    ending.finish(keep_ignoring=getattr(args, "as_program", False))
    return status


def _shipper(client: Client, level: str) -> Callable[[str], None]:
    def ship(text: str) -> None:
        client.log(text, level=level)

    return ship


def _pipe_stdin(client: Client, level: str, ending: _Ending) -> int:
    pump = _StreamPump(sys.stdin.fileno(), _binary(sys.stdout), _shipper(client, level), "stdin")
    stopped_by: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)

    # Ctrl-C, SIGTERM or SIGHUP ends reading; what was read so far is still delivered.
    previous = _take_stop_signals(stop)
    try:
        start_library_thread(pump)
        _join(pump, until=lambda: bool(stopped_by))
    finally:
        pump.stop()  # what it reads from now on is not ours: it could not be delivered
        ending.take(previous, stopped_by)
    return 128 + stopped_by[0] if stopped_by else 0


def _take_stop_signals(
    handler: Callable[[int, FrameType | None], None],
) -> dict[signal.Signals, _SignalHandler]:
    """Make ``handler`` the one for each signal that stops ``pipe``; the previous ones.

    SIGHUP too (a supervisor's reload or stop, the terminal closing): left to the
    library, it delivered what was queued and ended ``pipe`` by it, leaving the command
    running with no one reading its output, and went on showing stdin's lines it no
    longer shipped. One ignored (``nohup``) stays ignored.
    """
    stopping = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        stopping.append(hangup)
    return {signum: _on_signal(signum, handler) for signum in stopping}


class _Ending:
    """The stop signals once the command has ended (or standard input was read), until
    ``pipe`` exits with the status it owes.

    Never the previous handlers again: the library's would end ``pipe`` by the signal
    (its status lost, the drops unsaid: H192), and Ctrl-C's would raise wherever the
    main thread is. The first signal after the command ended, where none came while
    it ran, lets the wait for delivery go on to ``--timeout``, as the library's own
    ending does; one more after that (or the first, where one came while it ran) ends
    the wait at once (Ctrl-C twice), and only inside it: those the command got while it
    ran (Ctrl-C twice to make it quit) end nothing. The library's signal watcher does
    nothing with a signal ours took (see _exit._watch)."""

    def __init__(self) -> None:
        self.came = 0
        self.in_wait = False
        self.previous: Mapping[signal.Signals, _SignalHandler] = {}

    def take(self, previous: Mapping[signal.Signals, _SignalHandler], came: list[int]) -> None:
        self.came = 1 if came else 0  # (how many the command got: the ending's first)
        self.previous = previous
        for signum in previous:
            _on_signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.came += 1
        if self.in_wait and self.came > 1:
            raise _StopWaiting

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        if self.came > 1:  # sent again after the command ended, before the wait began
            raise _StopWaiting
        self.in_wait = True
        try:
            yield
        finally:
            self.in_wait = False

    def finish(self, *, keep_ignoring: bool) -> None:
        """Ignore the stop signals (``keep_ignoring``: up to the exit), or put back the
        handlers that were in force before ``pipe`` (a caller's own process)."""
        for signum, handler in self.previous.items():
            with contextlib.suppress(OSError, ValueError):
                if keep_ignoring:
                    signal.signal(signum, signal.SIG_IGN)
                else:
                    _restore_signal(signum, handler)


class _StopWaiting(KeyboardInterrupt):
    """A second SIGTERM, SIGINT or SIGHUP while ``pipe`` waits for delivery: stop now.
    A KeyboardInterrupt, which ``flush()`` lets through as it does Ctrl-C's."""


def _join(thread: threading.Thread, until: Callable[[], bool] = lambda: False) -> None:
    # Short waits: a signal may be delivered to another thread, and Python
    # runs its handler only when the main thread gets back to bytecode.
    while thread.is_alive() and not until():
        thread.join(0.2)


def _pipe_command(
    argv: list[str],
    client: Client,
    out_level: str,
    err_level: str,
    console: _Console,
    ending: _Ending,
) -> int:
    try:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        console.warn(f"{PROG} pipe: cannot run {argv[0]!r}: {exc.strerror or exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    assert child.stdout is not None and child.stderr is not None
    terminal_sigint = _terminal_delivers_sigint()

    forwarded: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.append(signum)
        if signum != signal.SIGTERM and terminal_sigint:
            return  # the terminal sent Ctrl-C (or its hangup) to the child as well
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    previous = _take_stop_signals(forward)
    pumps = [
        _StreamPump(child.stdout, _binary(sys.stdout), _shipper(client, out_level), "stdout"),
        _StreamPump(child.stderr, _binary(sys.stderr), _shipper(client, err_level), "stderr"),
    ]
    try:
        for pump in pumps:
            start_library_thread(pump)
        returncode = _wait(child)
        # Read to EOF; but a background process the command left behind may
        # hold the pipes open for ever: stop once they have been quiet a while.
        exited = time.monotonic()
        for pump in pumps:
            _join(pump, until=functools.partial(pump.quiet_for, _AFTER_EXIT_QUIET, exited))
    finally:
        for pump in pumps:
            pump.stop()  # as in _pipe_stdin
        ending.take(previous, forwarded)
        child.stdout.close()
        child.stderr.close()
    return 128 - returncode if returncode < 0 else returncode


def _wait(child: subprocess.Popen[bytes]) -> int:
    # Not a plain wait(): a blocking waitpid would hold back the signal handler
    # when the signal lands on one of our other threads (see _join).
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
