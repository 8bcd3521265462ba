"""Quotas: what does not fit is refused when it is created, never in the middle of a PATCH.

Two limits, both off by default (``c.TusApp.max_staged_size``, ``c.TusApp.quota``):

- **staged**: the bytes all unfinished uploads of the staging folder may take, each
  counted by its declared length (an upload of deferred length by the bytes it has
  received so far);
- **workspace**: the bytes the workspace may hold once everything under way has landed:
  the files under root_dir now (apparent sizes of regular files, one filesystem as
  ``du -x``, the staging folder left out, hard links once), plus the declared lengths of
  the unfinished uploads that land there, plus the new one (a file it replaces with
  ``overwrite`` counted out). With a quota, the filesystem of the destination must also
  have room (statvfs) for the new length plus what the unfinished uploads still have to
  write there.

An upload larger than a limit on its own gets UploadTooLarge (413); one that does not fit
beside the others StagingFull or QuotaExceeded (507, both InsufficientStorage), as does a
destination filesystem short of free space; every message says the numbers.

Checks read every record of the staging folder (and, at most once per ``rescan``
seconds, walk the workspace): run them in a worker thread. The manager holds a lock
across a check and the creation it admits, so two creations never both take the last
room.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path

from .filestore import FileStore
from .store import FileInfo, InsufficientStorage, UploadTooLarge


class StagingFull(InsufficientStorage):
    """The unfinished uploads already take what ``max_staged_size`` allows."""


class QuotaExceeded(InsufficientStorage):
    """The workspace, with what is under way, would go over its ``quota``."""


def describe(n: int) -> str:
    """``5.0 MiB (5242880 bytes)``, or ``600 bytes``."""
    if n < 1024:
        return f"{n} bytes"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    value, i = n / 1024, 0
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.1f} {units[i]} ({n} bytes)"


def workspace_usage(root_dir: str | os.PathLike, skip: str | os.PathLike) -> int:
    """Bytes of the regular files under ``root_dir`` (apparent sizes, symlinks not
    followed, other filesystems and the folder ``skip`` left out, a file with several
    links counted once). Unreadable folders count as empty. Blocking: a thread."""
    root = os.path.realpath(root_dir)
    skip = os.path.realpath(skip)
    device = os.stat(root).st_dev
    seen: set[tuple[int, int]] = set()
    total = 0
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == device and entry.path != skip:
                    folders.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Quotas:
    """The two limits of one server (0: none), checked by ``check``."""

    def __init__(
        self,
        store: FileStore,
        root_dir: str,
        *,
        max_staged_size: int = 0,
        quota: int = 0,
        rescan: float = 60.0,
    ) -> None:
        self.store = store
        self.root_dir = root_dir
        self.max_staged_size = max_staged_size
        self.quota = quota
        self.rescan = rescan
        self._lock = threading.Lock()
        self._usage: int | None = None  # the last walk of the workspace, plus landings
        self._measured = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.max_staged_size or self.quota)

    # ------------------------------------------------------------------ the workspace

    def usage(self) -> int:
        """The workspace's bytes: walked again once the last walk is ``rescan`` seconds
        old, and in between the files landed since added (``landed``)."""
        with self._lock:
            if self._usage is not None and time.monotonic() - self._measured < self.rescan:
                return self._usage
        usage = workspace_usage(self.root_dir, self.store.directory)
        with self._lock:
            self._usage, self._measured = usage, time.monotonic()
        return usage

    def landed(self, info: FileInfo) -> None:
        """A file landed: its bytes are in the workspace now, no longer under way."""
        with self._lock:
            if self._usage is not None and info.path:
                self._usage += info.size or 0

    # ------------------------------------------------------------------ the check

    def check(
        self,
        size: int | None,
        destination: str | None,
        *,
        upload_id: str | None = None,
        overwrite: bool = False,
        staged: bool = True,
    ) -> None:
        """Refuse a new upload of ``size`` bytes landing at ``destination`` (None: it
        stays in the store, or a partial upload), or the length ``size`` declared by
        the unfinished upload ``upload_id``, if it does not fit. ``staged``: it counts
        against ``max_staged_size`` (a final concatenation does not: its bytes are
        already staged). A size still unknown is not checked. Raises UploadTooLarge,
        StagingFull, QuotaExceeded or InsufficientStorage."""
        if size is None or not self.enabled:
            return
        under_way = [
            i for i in self.store.list_uploads() if not i.is_complete and i.id != upload_id
        ]
        if self.max_staged_size and staged:
            self._check_staged(size, under_way)
        if self.quota and destination is not None:
            self._check_workspace(size, Path(destination), overwrite, under_way)

    def _check_staged(self, size: int, under_way: list[FileInfo]) -> None:
        limit = self.max_staged_size
        if size > limit:
            raise UploadTooLarge(
                f"an upload of {describe(size)} is larger than all unfinished uploads"
                f" together may be on this server, {describe(limit)}"
            )
        taken = sum(i.size if i.size is not None else i.offset for i in under_way)
        if taken + size > limit:
            raise StagingFull(
                f"the unfinished uploads on this server already take {describe(taken)} of"
                f" the {describe(limit)} they may; {describe(size)} more do not fit now:"
                " finish or cancel other uploads first"
            )

    def _check_workspace(
        self, size: int, destination: Path, overwrite: bool, under_way: list[FileInfo]
    ) -> None:
        limit = self.quota
        if size > limit:
            raise UploadTooLarge(
                f"an upload of {describe(size)} is larger than the workspace's quota,"
                f" {describe(limit)}"
            )
        replaced = 0
        if overwrite:
            try:
                st = os.stat(destination, follow_symlinks=False)
                replaced = st.st_size if stat.S_ISREG(st.st_mode) else 0
            except OSError:
                pass
        landing = [i for i in under_way if i.path]
        pending = sum(i.size if i.size is not None else i.offset for i in landing)
        used = self.usage()
        if used + pending + size - replaced > limit:
            replacing = f" (replacing {describe(replaced)})" if replaced else ""
            raise QuotaExceeded(
                f"the workspace holds {describe(used)} and unfinished uploads will add"
                f" {describe(pending)}, of a quota of {describe(limit)}; {describe(size)}"
                f"{replacing} more do not fit: free some space first"
            )
        # The destination's filesystem must have room for it and for what the uploads
        # under way still have to write there (all of theirs, if staged elsewhere).
        folder = _nearest_existing(destination.parent)
        same_disk = os.stat(folder).st_dev == os.stat(self.store.directory).st_dev
        still = sum(
            (i.size - i.offset) if same_disk else i.size for i in landing if i.size is not None
        )
        free = shutil.disk_usage(folder).free
        if still + size > free:
            raise InsufficientStorage(
                f"the disk of the destination has {describe(free)} free and unfinished uploads"
                f" still need {describe(still)} of it; {describe(size)} more do not fit"
            )
