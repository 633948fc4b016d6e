"""Which process runs which run: one lock file per live run, so that no two do.

Two processes running one run would each perform its actions: every command twice,
every line of output twice. A process that runs a run (`Runtime.create_run`,
`resume_run`) first claims it: an exclusive `flock` on ``HOME/owners/RUN_ID``, which
holds the claimer's pid for the message others get. The kernel drops the lock when
the process dies, however it dies (`kill -9` included), so a crashed run can always
be resumed, and never while its owner still runs it.

A claim ends when the run ends in this process, or when the process closes its
runtime. The file is unlinked while still locked; a claimer that opened it just
before finds, once it holds the lock, that the path names another file (or none)
and tries again, so two claimers never both succeed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

OWNERS_DIR = "owners"


class RunBusy(Exception):
    """The run is claimed by another process (``pid``, when it could be read)."""

    def __init__(self, run_id: str, pid: int | None):
        self.run_id = run_id
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"run {run_id} is being run by {who}")


class ClaimFailed(Exception):
    """The claim file could not be made or written (the owners directory is a file,
    the disk is full, ...): one line saying which file and why."""


class RunOwnership:
    """The claims of one runtime on the runs of one home (thread-safe)."""

    def __init__(self, home: str | Path):
        self.dir = Path(home) / OWNERS_DIR
        self._held: dict[str, int] = {}    # run id -> fd of its locked file
        self._lock = threading.Lock()

    def claim(self, run_id: str) -> bool:
        """Claim `run_id` for this process: True if claimed now, False if this runtime
        held it already; `RunBusy` if another process (or another runtime of this
        one) holds it."""
        with self._lock:
            if run_id in self._held:
                return False
            path = self.dir / run_id
            try:
                self.dir.mkdir(mode=0o700, exist_ok=True)
                fd = self._lock_file(run_id, path)
            except FileExistsError:
                raise ClaimFailed(f"cannot claim run {run_id}: {self.dir} is not a "
                                  f"directory") from None
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    raise   # this process's limit, not the home's: its caller explains
                raise ClaimFailed(f"cannot claim run {run_id}: "
                                  f"{e.filename or path}: {e.strerror or e}") from None
            self._held[run_id] = fd
            return True

    @staticmethod
    def _lock_file(run_id: str, path: Path) -> int:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise RunBusy(run_id, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                break
            os.close(fd)   # released and unlinked meanwhile: claim the new file
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)   # (a full disk): the lock goes with it
            raise
        return fd

    def holds(self, run_id: str) -> bool:
        """Whether this runtime has claimed `run_id`."""
        return run_id in self._held

    def release(self, run_id: str) -> None:
        """End this runtime's claim on `run_id` (nothing if it has none)."""
        with self._lock:
            fd = self._held.pop(run_id, None)
            if fd is None:
                return
            try:
                if _same_file(fd, self.dir / run_id):   # (not one made after ours went)
                    os.unlink(self.dir / run_id)   # while locked: see the module docstring
            except OSError:
                pass
            os.close(fd)

    def release_all(self) -> None:
        """End every claim (the runtime closes)."""
        for run_id in list(self._held):
            self.release(run_id)


def run_owner(home: str | Path, run_id: str) -> int | None:
    """The pid of the process running `run_id` now; None if no process holds its
    claim (a live run then waits for `flowmetal resume`, or a daemon to adopt it).

    Reads the kernel's table of locks (``/proc/locks``) rather than trying the lock:
    a probe holding it even briefly could make a real claimer fail."""
    try:
        st = os.stat(Path(home) / OWNERS_DIR / run_id)
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    dev = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF" (device numbers in hex)
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        try:
            maj, mnr, ino = parts[5].split(":")
            if (int(maj, 16), int(mnr, 16), int(ino)) == dev:
                return int(parts[4])
        except ValueError:
            continue
    return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_ino, own.st_dev) == (st.st_ino, st.st_dev)
