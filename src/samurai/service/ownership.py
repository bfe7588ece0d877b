"""One owner per data folder, and a database that is checked before it is used.

A running server holds an exclusive ``flock`` on ``<data dir>/server.lock`` and, when the job
database lives elsewhere, on ``<db>.lock``. The kernel drops the lock when the process ends
however it ends (even ``kill -9``), so a lock that is held means the owner is alive: a second
server refuses to start, before it touches any job. Jobs carry the rest of the ownership: each
claim increments the job's ``attempts`` and names its worker, and every later write of that
worker must present the attempt (see `samurai.service.store`). A remote executor can later own a
job the same way, with the server's lock standing for "the queue has a live owner".

`check_database` opens an existing database read-only and refuses a file that is not a healthy
SQLite database, without ever writing, truncating or "repairing" it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from samurai.service.schemas import ServiceSettings

__all__ = ["DataDirLock", "DatabaseError", "OwnershipError", "check_database", "prepare"]


class OwnershipError(ValueError):
    """Another live process owns the data folder or the database."""


class DatabaseError(ValueError):
    """The job database cannot be used: damaged, not a database, or not writable."""


class DataDirLock:
    """Exclusive locks on a data folder (and an outside database), held until `release`."""

    def __init__(self, data_dir: Path, db_path: Path) -> None:
        self.paths = [data_dir / "server.lock"]
        if not db_path.resolve().is_relative_to(data_dir.resolve()):
            self.paths.append(db_path.with_name(db_path.name + ".lock"))
        self._fds: list[int] = []

    def acquire(self) -> DataDirLock:
        """Take every lock or none.

        Raises:
            OwnershipError: a live process holds one (its pid, host and start time are named).
        """
        try:
            for path in self.paths:
                self._fds.append(self._lock(path))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    @staticmethod
    def _lock(path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = _read_owner(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise OwnershipError(f"cannot lock {path}: {exc.strerror}") from None
            raise OwnershipError(
                f"{path.parent} is in use by another samurai serve ({owner}); "
                "stop it first or use another --data-dir / --db"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return fd


def _read_owner(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {int(info['pid'])} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


def check_database(path: Path) -> None:
    """Refuse a job database that exists but cannot serve: never creates, writes or repairs.

    A missing file is fine (the store creates it). An existing one must be a regular file that
    SQLite opens, whose ``quick_check`` passes and which can be written.

    Raises:
        DatabaseError: one line naming the file and the reason; the file is left untouched.
    """
    if not path.exists():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise DatabaseError(f"job database {path}: {folder} is not a writable folder")
        return
    if not path.is_file():
        raise DatabaseError(f"job database {path} is not a file (a folder or device is there)")
    advice = "it was left untouched; restore it from a backup or point --db elsewhere"
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        reason = f"job database {path} is damaged or not a database ({exc}); {advice}"
        raise DatabaseError(reason) from None
    if row is None or row[0] != "ok":
        raise DatabaseError(f"job database {path} failed its integrity check ({row}); {advice}")
    if tables and "jobs" not in tables:
        raise DatabaseError(f"{path} is an SQLite database but not a samurai job database")
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS _write_check (x)")
            db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise DatabaseError(f"job database {path} cannot be written ({exc})") from None


def prepare(settings: ServiceSettings) -> DataDirLock:
    """Before a server touches anything: own its data folder, then check its database.

    Raises:
        OwnershipError: another live server owns them.
        DatabaseError: the database is damaged or cannot be written.
    """
    data_dir = settings.data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"data folder {data_dir}: {exc.strerror}") from None
    lock = DataDirLock(data_dir, settings.db_path.expanduser().resolve()).acquire()
    try:
        check_database(settings.db_path)
    except BaseException:
        lock.release()
        raise
    return lock
