"""One writer at a time: an ``flock`` on ``$MODEL_SLOT_STATE_DIR/slot.lock``.

``flock`` locks belong to the open file description, so they hold across processes and across
the host/container boundary when the state directory is bind-mounted (same inode, same kernel),
and the kernel drops them when the holder dies: no stale lock to clean up after a crash.

The holder writes who it is into the lock file (pid, host, what it does, since when), so a
refused writer can say who is in the way. The file itself is never removed: removing it would
let a second writer lock a new inode while the first still holds the old one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from orchestrator.errors import BusyError

LOCK_FILE = "slot.lock"


class SlotLock:
    """``with SlotLock(state_dir, "switch cpu-tiny"):`` or ``acquire()``/``release()``."""

    def __init__(self, state_dir: Path, purpose: str) -> None:
        self.path = state_dir / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s``; BusyError names the holder otherwise."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        except PermissionError:
            raise BusyError(
                f"cannot open {self.path}: permission denied; it belongs to another user (the "
                "controller runs as root?): run this as that user, or start the controller "
                "(`up`) so the CLI can ask it"
            ) from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise BusyError(
                        f"the slot is busy: {self.holder()} holds {self.path}; "
                        "wait for it to finish (or, if a controller runs, the CLI talks to it)"
                    ) from None
                time.sleep(0.1)  # flock has no timed wait; this is a bounded retry, not a sync
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it (best effort)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "another process"
        return (
            f"pid {info.get('pid')} on {info.get('host')} ({info.get('purpose')}, "
            f"since {info.get('since')})"
        )

    def __enter__(self) -> SlotLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
