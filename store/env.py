"""Opening the LMDB environment: home directory and permissions, sanity checks of the
files, schema version, the named databases, map growth and stale reader slots.

One `Env` per store path per process: LMDB must not be opened twice by one process
(its POSIX locks would be released by the second close), so `acquire_env` shares it.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable

import lmdb

from .batch import DB_NAMES, SCHEMA_VERSION
from .errors import (CorruptStoreError, NotAStoreError, SchemaError, StoreClosedError,
                     StoreError, StoreFullError, StoreNotFoundError)

MAGIC = b"flowmetal-store"
STORE_DIR = "store"
DEFAULT_MAP_SIZE = 256 << 20
DEFAULT_MAX_MAP_SIZE = 1 << 40
MAX_READERS = 1024

_registry: dict[str, "Env"] = {}
_registry_lock = threading.Lock()


# fork(): the child cannot use the parent's environment (LMDB forbids it) and cannot
# open the files again while py-lmdb sees them open. So the parent waits out its own
# transactions before forking, and the child closes its copy, which then has no
# transaction (closing only clears reader slots of the child's own pid).
def _before_fork() -> None:
    _registry_lock.acquire()
    for e in _registry.values():
        e.gate.exclusive_begin()


def _after_fork_in_parent() -> None:
    for e in _registry.values():
        e.gate.exclusive_end()
    _registry_lock.release()


def _after_fork_in_child() -> None:
    for e in _registry.values():
        e.forked = True
        try:
            e.env.close()
        except Exception:  # noqa: BLE001 - the child must not fail here
            pass
    _registry.clear()
    globals()["_registry_lock"] = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class Gate:
    """Shared/exclusive gate around every transaction of this process.

    Changing the map size needs no transaction open in the process, so map growth
    takes the gate exclusively; all transactions take it shared.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._excl = False

    def enter(self) -> None:
        with self._cond:
            while self._excl:
                self._cond.wait()
            self._shared += 1

    def leave(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._excl and self._shared == 0:
                self._cond.notify_all()

    def exclusive_begin(self) -> None:
        with self._cond:
            while self._excl:
                self._cond.wait()
            self._excl = True
            while self._shared:
                self._cond.wait()

    def exclusive_end(self) -> None:
        with self._cond:
            self._excl = False
            self._cond.notify_all()


def _secure_dir(path: Path, create: bool, what: str) -> bool:
    """Make sure ``path`` is a directory of ours with mode 0700; True if created."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if not create:
            raise StoreNotFoundError(f"no Flowmetal store at {path}") from None
        try:
            path.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass
        except OSError as e:
            raise StoreError(f"cannot create {what} {path}: {e.strerror}") from None
        os.chmod(path, 0o700)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise NotAStoreError(f"{path} is not a Flowmetal store: it is not a directory")
    if st.st_uid != os.getuid():
        raise StoreError(f"{what} {path} belongs to another user; refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return False


class Env:
    """The process's handle on one store directory (shared by its `Store` objects)."""

    def __init__(self, home: Path, path: Path, env: lmdb.Environment, dbs: dict,
                 sync: bool, max_map_size: int) -> None:
        self.home = home
        self.path = path
        self.env = env
        self.db = dbs
        self.sync = sync
        self.max_map_size = max_map_size
        self.gate = Gate()
        self.write_lock = threading.Lock()
        self.refs = 0
        self.closed = False
        self.forked = False
        self.pid = os.getpid()
        self.app_version = "unknown"
        self.committer = None  # set by acquire_env
        # Commits of this process, numbered, and the last one known to be on disk. The
        # environment is opened with MDB_NOMETASYNC: a commit fsyncs its data pages and
        # then writes its meta page (the one that makes it current) without a sync. A
        # durable commit syncs that page too (`make_durable`); a quiet one leaves it to
        # the next commit, whose data sync takes it along (see `write`).
        self._commits = 0
        self._synced = 0
        self._sync_lock = threading.Lock()
        # Set once an fsync failed: what was committed since the last good one may or
        # may not be on disk (Linux marks the pages clean anyway), so nothing more may
        # be written or read as if it were, as LMDB does after a fatal error.
        self.broken: str | None = None

    def check(self) -> None:
        if self.closed:
            raise StoreClosedError(f"store {self.home} is closed")
        if self.broken is not None:
            raise StoreError(self.broken)
        if self.forked:
            raise StoreClosedError(f"store {self.home} was opened before fork(); "
                                   "open it again in this process")

    # -------------------------------------------------------------- transactions
    def read(self, fn):
        """Run ``fn(txn)`` in a read transaction."""
        self.check()
        while True:
            self.gate.enter()
            try:
                with self.env.begin() as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                pass
            except lmdb.Error as e:
                raise translate(e, self.home) from None
            finally:
                self.gate.leave()
            self.adopt_map_size()

    def write(self, fn, before_commit: Callable[[], None] | None = None, *,
              durable: bool = True):
        """Run ``fn(txn)`` in a write transaction and commit; grow the map and retry if
        it is full. The caller holds ``write_lock``. ``before_commit()``, if given, is
        called right before each attempt's commit: the page writes and the fsyncs, during
        which this thread needs no GIL (others may run meanwhile).

        With ``durable`` (the default) the commit is on disk when this returns. Without,
        it is *quiet*: committed and visible, its data pages on disk, but a power loss
        (not a crash of any process) may still take it back until the next commit of
        any process or `make_durable` — for a commit whose effects nobody outside the
        store has seen yet. Either way every earlier commit of this process is durable
        once it returns."""
        self.check()
        while True:
            self.gate.enter()
            grow = adopt = done = False
            try:
                txn = self.env.begin(write=True)
                try:
                    out = fn(txn)
                    if before_commit is not None:
                        before_commit()
                    txn.commit()
                    done = True
                except BaseException:
                    txn.abort()
                    raise
            except lmdb.MapFullError:
                grow = True
            except lmdb.MapResizedError:
                adopt = True
            except lmdb.Error as e:
                raise translate(e, self.home) from None
            finally:
                self.gate.leave()
            if done:
                # Outside the gate: `make_durable` takes it again, and a map growth
                # waiting for the gate would block that second entry.
                self._committed(durable)
                return out
            if grow:
                self.grow_map()
            elif adopt:
                self.adopt_map_size()

    def _committed(self, durable: bool) -> None:
        if not self.sync:
            return
        with self._sync_lock:
            self._commits += 1
            n = self._commits
            # This commit's data sync wrote every earlier commit's meta page too.
            self._synced = max(self._synced, n - 1)
        if durable:
            self.make_durable(n)

    def make_durable(self, upto: int | None = None) -> None:
        """Put every commit of this process (up to number ``upto``) on disk: one fsync,
        or none if they are there already."""
        if not self.sync:
            return
        with self._sync_lock:
            target = self._commits if upto is None else upto
            if self._synced >= target:
                return
        self.sync_file()
        with self._sync_lock:
            self._synced = max(self._synced, target)

    def sync_file(self) -> None:
        """fsync the data file: every commit of any process is on disk afterwards.
        A failure breaks the environment (see `broken`) and raises a StoreError, never
        a StoreFullError: the commit before it stands, and must not be retried."""
        if not self.sync:
            return
        self.gate.enter()
        try:
            self.env.sync(True)
        except lmdb.Error as e:
            self.broken = (f"store {self.home}: committed data could not be synced to disk "
                           f"({e}); close and reopen the store (what was acknowledged "
                           "before is safe)")
            raise StoreError(self.broken) from None
        finally:
            self.gate.leave()

    def grow_map(self) -> None:
        """Double the map (no transaction of this process is open meanwhile)."""
        self.gate.exclusive_begin()
        try:
            cur = self.env.info()["map_size"]
            if cur >= self.max_map_size:
                raise StoreFullError(
                    f"store {self.home} is full: its map reached the maximum of "
                    f"{self.max_map_size >> 20} MiB")
            new = min(max(cur * 2, cur + (64 << 20)), self.max_map_size)
            try:
                self.env.set_mapsize(new)
            except lmdb.Error as e:
                raise translate(e, self.home) from None
        finally:
            self.gate.exclusive_end()

    def adopt_map_size(self) -> None:
        """Another process grew the map: take its size."""
        self.gate.exclusive_begin()
        try:
            self.env.set_mapsize(0)
        except lmdb.Error as e:
            raise translate(e, self.home) from None
        finally:
            self.gate.exclusive_end()


def translate(e: BaseException, home) -> StoreError:
    """An LMDB error as a one-line StoreError."""
    msg = str(e)
    if isinstance(e, lmdb.MapFullError):
        return StoreFullError(f"store {home} is full")
    if isinstance(e, lmdb.PanicError):
        return StoreError(f"store {home}: a write failed fatally; close and reopen the "
                          "store (what was acknowledged before is safe)")
    if isinstance(e, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                      lmdb.VersionMismatchError)):
        return CorruptStoreError(f"store {home} is damaged: {msg}")
    if isinstance(e, lmdb.ReadersFullError):
        return StoreError(f"store {home}: too many readers ({msg})")
    if "No space left" in msg or "Disk quota" in msg:
        return StoreFullError(f"store {home}: the disk is full ({msg})")
    if "Input/output error" in msg and _disk_nearly_full(home):
        # LMDB reports a short write (what a full disk gives) as EIO.
        return StoreFullError(f"store {home}: the disk is full ({msg})")
    return StoreError(f"store {home}: {msg}")


def _disk_nearly_full(home) -> bool:
    try:
        st = os.statvfs(home)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (16 << 20) or st.f_bavail < st.f_blocks // 200


def acquire_env(home: Path, *, sync: bool, create: bool, map_size: int,
                max_map_size: int, verify: bool = False, app_version: str = "unknown") -> Env:
    home = Path(home).expanduser().absolute()
    with _registry_lock:
        key = str(home.resolve()) if home.exists() else str(home)
        env = _registry.get(key)
        if env is not None and not env.closed:
            if env.sync != sync:
                raise StoreError(f"store {home} is already open in this process with "
                                 f"sync={env.sync}")
            env.refs += 1
            return env
        env = _open(home, sync=sync, create=create, map_size=map_size,
                    max_map_size=max_map_size, verify=verify)
        from .committer import Committer
        env.app_version = app_version
        env.committer = Committer(env)
        _registry[str(home.resolve())] = env
        env.refs = 1
        return env


def release_env(env: Env) -> bool:
    """Drop one reference; the last one commits what is queued and closes the
    environment. True if closed."""
    with _registry_lock:
        env.refs -= 1
        if env.refs > 0 or env.closed:
            return False
        if env.committer is not None:
            env.committer.stop()
        with env.write_lock:
            env.closed = True
            for k, v in list(_registry.items()):
                if v is env:
                    del _registry[k]
            env.gate.exclusive_begin()
            try:
                env.env.close()
            finally:
                env.gate.exclusive_end()
    return True


def verify_files(home: Path) -> list[str]:
    """Walk every page of the store's data file offline (py-lmdb's verifier) and
    return the problems found; [] when it is sound. Never hands the file to LMDB."""
    data = Path(home) / STORE_DIR / "data.mdb"
    if not data.is_file():
        raise StoreNotFoundError(f"no Flowmetal store at {home}")
    try:
        from lmdb import verify as lmdb_verify
    except ImportError:  # py-lmdb < 3.0 has no verifier
        raise StoreError("this py-lmdb has no file verifier (needs lmdb >= 3.0)") from None
    try:
        return list(lmdb_verify.verify(str(data), subdir=False))
    except lmdb_verify.VerifyError as e:
        return [str(e)]


def _open(home: Path, *, sync: bool, create: bool, map_size: int, max_map_size: int,
          verify: bool = False) -> Env:
    _secure_dir(home, create, "home directory")
    path = home / STORE_DIR
    _secure_dir(path, create, "store directory")
    data = path / "data.mdb"
    try:
        size = data.stat().st_size
    except FileNotFoundError:
        if not create:
            raise StoreNotFoundError(f"no Flowmetal store at {home}") from None
        size = 0
    except OSError as e:
        raise StoreError(f"cannot read {data}: {e.strerror}") from None
    if data.exists() and not data.is_file():
        raise NotAStoreError(f"{home} is not a Flowmetal store: {data} is not a file")
    if 0 < size < 2 * 4096:
        raise CorruptStoreError(f"store {home} is damaged: {data.name} is truncated "
                                f"({size} bytes)")
    if verify and size:
        problems = verify_files(home)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CorruptStoreError(f"store {home} is damaged: {problems[0]}{more}")
    if create:
        _reserve_lock_file(path / "lock.mdb", home)
    old_umask = os.umask(0o077)
    try:
        env = _open_env(path, map_size=map_size, sync=sync, create=create)
    except lmdb.InvalidError:
        raise NotAStoreError(f"{home} is not a Flowmetal store (or it is damaged): "
                             f"{data.name} is not an LMDB file") from None
    except lmdb.VersionMismatchError:
        raise NotAStoreError(f"{home}: {data.name} was written by an incompatible "
                             "LMDB version") from None
    except lmdb.Error as e:
        raise translate(e, home) from None
    finally:
        os.umask(old_umask)
    try:
        for name in ("data.mdb", "lock.mdb"):
            p = path / name
            if p.exists() and stat.S_IMODE(p.stat().st_mode) != 0o600:
                os.chmod(p, 0o600)
        _check_size(env, data, home)
        for attempt in range(10):
            try:
                dbs = _open_dbs(env, home)
                break
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # another process grew the map meanwhile
        else:
            raise StoreError(f"store {home}: its map keeps changing size; try again")
        env.reader_check()
    except BaseException:
        env.close()
        raise
    return Env(home, path, env, dbs, sync, max_map_size)


# LMDB sizes its lock file (the reader table) to about 64 bytes per reader plus a
# header, sparsely, and writes it through a memory map: on a full tmpfs the first
# write is a SIGBUS that kills the process without a word. Reserved first, the
# space is there, or the disk is full is said in one line. (A larger file only
# gives LMDB more reader slots.)
LOCK_FILE_BYTES = (MAX_READERS + 1) * 64 + 4096


def _reserve_lock_file(lock: Path, home: Path) -> None:
    try:
        if lock.exists():
            return   # made (and its pages written) by an earlier open
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StoreError(f"cannot make {lock}: {e.strerror or e}") from None
    try:
        os.posix_fallocate(fd, 0, LOCK_FILE_BYTES)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return   # a file system that cannot reserve: LMDB's own way, as before
        try:
            os.unlink(lock)   # else the next open would take it as reserved
        except OSError:
            pass
        if e.errno == errno.ENOSPC:
            raise StoreFullError(f"store {home}: the disk is full (cannot make "
                                 f"{lock.name})") from None
        raise StoreError(f"cannot make {lock}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _open_env(path: Path, *, map_size: int, sync: bool, create: bool) -> lmdb.Environment:
    # py-lmdb begins a transaction inside open(); if another process grows the map
    # between LMDB reading the size and that transaction, it fails MAP_RESIZED.
    # Opening again adopts the new size.
    for attempt in range(10):
        try:
            return lmdb.open(str(path), map_size=max(map_size, 1 << 20),
                             max_dbs=len(DB_NAMES) + 8, max_readers=MAX_READERS,
                             sync=sync, metasync=False, mode=0o600, create=create,
                             readahead=False, lock=True, subdir=True)
        except lmdb.MapResizedError:
            if attempt == 9:
                raise
            time.sleep(0.001 * (attempt + 1))
    raise AssertionError("unreachable")


# Pages a healthy data file may lack below its last page number: LMDB takes pages
# from the end that it frees again within the same transaction and never writes, so
# a live store's file can be a few pages short (CI saw 2, with a daemon committing).
UNWRITTEN_PAGES = 16


def _check_size(env: lmdb.Environment, data: Path, home: Path) -> None:
    # Reading a page past the end of a truncated file through the map is SIGBUS, not
    # an error: refuse such a file up front.
    psize = env.stat()["psize"]
    need = (env.info()["last_pgno"] + 1 - UNWRITTEN_PAGES) * psize
    have = data.stat().st_size
    if have < need:
        # Short of its last page number by more than a few pages is not proof: pages
        # taken and freed again within big transactions (group commits of batches
        # that failed) are never written. The offline walk of every reachable page
        # decides (it reads the file, never maps it).
        try:
            problems = verify_files(home)
        except StoreError:
            problems = ["(no verifier to tell)"]
        if problems:
            raise CorruptStoreError(f"store {home} is damaged: {data.name} is truncated "
                                    f"({have} bytes, its data needs {need})")


def _open_dbs(env: lmdb.Environment, home: Path) -> dict:
    names = [n.encode() for n in DB_NAMES]
    try:
        with env.begin() as txn:
            main = list(txn.cursor().iternext(values=False))
            schema = magic = None
            if b"meta" in main:
                meta = env.open_db(b"meta", txn=txn, create=False)
                magic = txn.get(b"magic", db=meta)
                schema = txn.get(b"schema", db=meta)
    except lmdb.MapResizedError:
        raise
    except lmdb.Error as e:
        raise translate(e, home) from None
    if main and magic != MAGIC:
        raise NotAStoreError(f"{home} is not a Flowmetal store: it is an LMDB "
                             "environment of something else")
    if schema is not None:
        try:
            version = int(schema)
        except ValueError:
            raise CorruptStoreError(f"store {home} is damaged: bad schema record") from None
        if version > SCHEMA_VERSION:
            raise SchemaError(f"store {home} has schema {version}, newer than this "
                              f"Flowmetal's {SCHEMA_VERSION}; upgrade Flowmetal")
    dbs = {}
    try:
        # In a write txn even when they all exist: handles opened in a read txn may
        # not outlive it.
        with env.begin(write=True) as txn:
            for n in names:
                dbs[n.decode()] = env.open_db(n, txn=txn, create=True)
            if magic is None:
                txn.put(b"magic", MAGIC, db=dbs["meta"])
                txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=dbs["meta"])
    except lmdb.IncompatibleError:
        raise NotAStoreError(f"{home} is not a Flowmetal store: its LMDB databases "
                             "do not match") from None
    except lmdb.MapResizedError:
        raise
    except lmdb.Error as e:
        raise translate(e, home) from None
    return dbs
