"""Output files that never carry a final name half-written (see :mod:`samurai.io.sinks`).

An output is written as ``<stem>.partial<suffix>`` and renamed when closed: to its final name when
complete, to ``<stem>.incomplete<suffix>`` when not. Only files, and folders of frame PNGs, are
ever removed. Write failures (disk full, ...) become one-line `OutputError`s naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["OutputError", "Staged", "TextOutput", "marked_path", "writing"]

_FRAME_PNG = re.compile(r"^\d+\.png$")


class OutputError(OSError):
    """An output could not be written; ``str()`` is one line naming the file and the reason."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno  # type: ignore[misc]

    def __str__(self) -> str:
        return str(self.args[0])


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line `OutputError`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        reason = exc.strerror or (str(exc).splitlines() or [""])[0] or type(exc).__name__
        raise OutputError(f"cannot write {path}: {reason}", exc.errno) from exc


def marked_path(path: Path, mark: str) -> Path:
    """``boxes_1.txt`` -> ``boxes_1.<mark>.txt``, ``masks`` -> ``masks.<mark>``."""
    return path.with_name(f"{path.stem}.{mark}{path.suffix}")


class Staged:
    """One output path written under its ``.partial`` name and renamed when closed."""

    def __init__(self, final: Path, *, folder: bool = False) -> None:
        self.final, self.folder = final, folder
        self.partial = marked_path(final, "partial")
        self.incomplete = marked_path(final, "incomplete")

    def start(self) -> Path:
        with writing(self.partial):
            self.final.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.final, self.partial, self.incomplete):
            if not self.folder and path.is_dir():
                raise IsADirectoryError(f"{path} is a folder; the output is a file")
        # an earlier run's complete output stays until this one completes (finish replaces it):
        # a rerun that fails or is interrupted never costs the user a finished result
        _check_removable(self.final)
        for stale in (self.partial, self.incomplete):
            _remove(stale)
        return self.partial

    def finish(self, complete: bool) -> Path:
        target = self.final if complete else self.incomplete
        with writing(target):
            _remove(target)
            os.replace(self.partial, target)
        return target

    def discard(self) -> None:
        """Remove the ``.partial`` output (a run that completed nothing leaves nothing)."""
        with contextlib.suppress(OSError):
            _remove(self.partial)


class TextOutput:
    """A text file written frame by frame under its ``.partial`` name, unbuffered.

    Each `append` goes to disk at once and is followed by ``tail(False)`` (``masks.json``'s
    closing brackets), so the ``.partial`` file always holds every complete frame in a readable
    form, even after a kill. An append that fails (disk full) is cut back off the file; `undo`
    removes the last append (a frame another output failed to write).
    """

    def __init__(self, final: Path, tail: Callable[[bool], str] | None = None) -> None:
        self.staged = Staged(final)
        self._tail = tail or (lambda complete: "")
        self._fd: int | None = None
        self._end = self._before = 0

    @property
    def path(self) -> Path:
        return self.staged.partial

    def start(self, head: str = "") -> None:
        path = self.staged.start()
        with writing(path):
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._end = self._before = 0
        self.append(head)

    def append(self, text: str) -> None:
        """Write ``text`` after the last complete append, then the tail."""
        data = text.encode("utf-8")
        try:
            self._write_at(self._end, data + self._tail(False).encode("utf-8"))
        except OutputError:
            with contextlib.suppress(OSError):
                self._cut(self._end, self._tail(False))
            raise
        self._before, self._end = self._end, self._end + len(data)

    def undo(self) -> None:
        """Remove the last append (only one level)."""
        with contextlib.suppress(OSError):
            self._cut(self._before, self._tail(False))
            self._end = self._before

    def finish(self, complete: bool) -> Path:
        """Write the final tail, close and rename; the file name is final only if complete."""
        try:
            if self._fd is not None:
                self._cut(self._end, self._tail(complete))
        finally:
            self._close()
        return self.staged.finish(complete)

    def discard(self) -> None:
        self._close()
        self.staged.discard()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _cut(self, offset: int, tail: str) -> None:
        data = tail.encode("utf-8")
        self._write_at(offset, data)
        assert self._fd is not None
        with writing(self.path):
            os.ftruncate(self._fd, offset + len(data))

    def _write_at(self, offset: int, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is not open")
        with writing(self.path):
            os.lseek(self._fd, offset, os.SEEK_SET)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]


def _check_removable(path: Path) -> None:
    """Raise `FileExistsError` when ``path`` is a folder holding anything but frame PNGs."""
    if path.is_dir() and any(not _FRAME_PNG.match(child.name) for child in path.iterdir()):
        raise FileExistsError(f"{path} holds files other than frame PNGs; move it")


def _remove(path: Path) -> None:
    """Delete an output file, or an output folder of frame PNGs (never anything else)."""
    if path.is_dir():
        _check_removable(path)  # before deleting anything
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
