"""Process helpers shared by the job worker (engine.jobs) and the sweep worker (engine.sweep).

One-line error text; whether a process runs (a zombie counts as dead); when a worker counts as
stopped (the one rule both stale-recovery routines apply); the heartbeat thread; signal handlers;
the torch thread count. Nothing here imports torch until set_threads() is called.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator


def one_line(exc: BaseException, limit: int = 500) -> str:
    """'Type: message' on one line, at most `limit` characters (the error a job or trial records)."""
    text = " ".join(str(exc).split()) or "(no message)"
    msg = f"{type(exc).__name__}: {text}"
    return msg if len(msg) <= limit else msg[:limit - 3] + "..."


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    # a zombie (exited, not yet reaped) still answers kill(0): look at /proc where there is one
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def gone(host: str | None, pid) -> bool:
    """A worker on this host whose process does not run: stopped, whatever its heartbeat says.
    One on another host (or without a usable pid) can only be judged by its heartbeat."""
    if host != socket.gethostname() or pid is None:
        return False
    try:
        return not pid_alive(int(pid))
    except (TypeError, ValueError):
        return False


def why_stopped(host: str | None, pid, last_beat: float | None, limit: float, now: float | None = None) -> str | None:
    """When a worker counts as stopped: "gone" (see gone()), "silent" (no heartbeat for `limit`
    seconds, or none known), None while it counts as alive. The job table and the sweep's trials
    both recover the work of a worker this calls stopped."""
    if gone(host, pid):
        return "gone"
    now = time.time() if now is None else now
    if last_beat is None or now - float(last_beat) >= limit:
        return "silent"
    return None


class Beat:
    """Calls `fn` every `interval` seconds on a daemon thread until `stop` is set (or close()).
    An exception in `fn` goes to `on_error` and the next beat tries again: a heartbeat never dies."""

    def __init__(self, interval: float, fn: Callable[[], None], name: str, stop: threading.Event | None = None,
                 on_error: Callable[[Exception], None] | None = None):
        self.interval, self.fn, self.on_error = interval, fn, on_error
        self.stop = stop or threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.fn()
            except Exception as err:
                if self.on_error is not None:
                    with contextlib.suppress(Exception):
                        self.on_error(err)

    def start(self) -> "Beat":
        self.thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)

    def __enter__(self) -> "Beat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def install_handlers(handlers: dict) -> dict:
    """Install {signal number: handler}; returns the handlers they replace. Python allows handlers
    only in the main thread: elsewhere nothing is installed and {} is returned."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, fn) for sig, fn in handlers.items()}


@contextlib.contextmanager
def signal_handlers(handlers: dict) -> Iterator[None]:
    """install_handlers() for the length of the `with`; the old handlers are put back after it."""
    old = install_handlers(handlers)
    try:
        yield
    finally:
        for sig, fn in old.items():
            signal.signal(sig, fn)


_THREADS_SET = False


def set_threads(threads: int | None) -> None:
    """Set torch's thread count, once per process (a sweep trial is small: one thread per worker)."""
    global _THREADS_SET
    if threads and not _THREADS_SET:
        import torch
        torch.set_num_threads(int(threads))
        _THREADS_SET = True
