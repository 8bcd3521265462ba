"""Where finished uploads land, checked at the moment they land.

A destination is named when an upload is created, but the folders on its way can change
before the last byte arrives: a folder replaced by a file, or by a symbolic link to a
folder outside root_dir. So every filesystem step that touches a destination goes
through a ``Workspace``: it walks the folders from root_dir with directory file
descriptors, checks the *real* location of each folder it opened (``/proc/self/fd``)
against root_dir and the hidden-file rule, creates missing folders only inside a folder
it has checked, and hands back a descriptor of the destination folder. The final link or
rename then goes through that descriptor (``dst_dir_fd``), so a path swapped after the
check can no longer redirect it: what lands, lands in the folder that was checked.

Also here: unique names that stay within NAME_MAX, and the group and mode a landed file
gets (those of a file written in place by jupyter-server's contents manager).

Nothing here knows HTTP; errors are the store's (``LandingRefused``) or ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .store import LandingRefused

NAME_MAX = 255  # bytes, on every filesystem Jupyter servers run on (ext4, xfs, btrfs, tmpfs)

# Landing errors that no retry can fix: the destination itself must change.
PERMANENT_ERRNOS = frozenset(
    {errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR, errno.ELOOP, errno.ENOTEMPTY}
)


def process_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``, Linux
    4.7+); elsewhere the classic set-and-restore, done once at start."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unique_name(name: str, taken: Callable[[str], bool]) -> str:
    """``data.csv`` -> ``data (1).csv``, ``data (2).csv``, ... the first name for which
    ``taken`` is False. The stem is shortened (on a UTF-8 character boundary, keeping
    the extension) so that the result never passes NAME_MAX bytes."""
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    if len(ext.encode()) > NAME_MAX // 2:  # "a.<200 bytes>": not an extension to keep
        stem, ext = name, ""
    n = 1
    while True:
        tag = f" ({n})"
        room = NAME_MAX - len(tag.encode()) - len(ext.encode())
        short = stem.encode()[:room].decode("utf-8", errors="ignore")
        candidate = f"{short}{tag}{ext}"
        if not taken(candidate):
            return candidate
        n += 1


@dataclass(frozen=True)
class Ownership:
    """The mode, and the group (and owner) where they can be set, for a landed file."""

    mode: int
    uid: int
    gid: int

    def apply(self, fd: int) -> None:
        """Set them on an open file; a group or owner we may not give is left as is."""
        try:
            os.fchown(fd, self.uid, self.gid)
        except PermissionError:  # not root: our own files, in a group we belong to
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, self.gid)
        os.fchmod(fd, self.mode)  # after chown, which may clear setuid/setgid bits


class Workspace:
    """The root folder finished uploads land in, with the contents manager's rules.

    ``root`` is resolved once (it may itself be a symlink); ``allow_hidden`` is the
    contents manager's setting. A store used without a server gets ``Workspace("/",
    allow_hidden=True)``: containment is then only what the OS allows.
    """

    def __init__(self, root: str | os.PathLike, *, allow_hidden: bool = False) -> None:
        self.root = Path(os.path.realpath(root))
        self.allow_hidden = allow_hidden
        self.umask = process_umask()

    def relative_parts(self, path: str | os.PathLike) -> list[str]:
        """The components of ``path`` (absolute) below the root; LandingRefused if it
        is not below it."""
        try:
            parts = Path(path).relative_to(self.root).parts
        except ValueError:
            raise LandingRefused("the destination is outside the server's root directory") from None
        if not parts:
            raise LandingRefused("the destination is the server's root directory itself")
        return list(parts)

    def check_name(self, name: str) -> None:
        """The file's own name: hidden names only where the contents manager allows."""
        if name.startswith(".") and not self.allow_hidden:
            raise LandingRefused(f"{name!r} is a hidden name; upload it under another name")

    def _check_real(self, fd: int, shown: str) -> None:
        """The folder open as ``fd`` is really inside the root, and not hidden."""
        real = _real_path(fd)
        if real is None:
            raise LandingRefused(f"folder {shown!r} was removed while the file landed")
        if real != self.root and self.root not in real.parents:
            raise LandingRefused(
                f"folder {shown!r} leads outside the server's root directory"
                " (a symbolic link); upload to another folder or remove the link"
            )
        if not self.allow_hidden:
            hidden = [p for p in real.relative_to(self.root).parts if p.startswith(".")]
            if hidden:
                raise LandingRefused(
                    f"folder {shown!r} leads into a hidden folder ({hidden[0]!r});"
                    " upload to another folder"
                )

    @contextlib.contextmanager
    def open_folder(
        self, parts: list[str], *, create: bool = True, sync: bool = False
    ) -> Iterator[int]:
        """A descriptor of the folder ``root/parts``, each step checked; missing folders
        are created (mode 0o777 minus the umask, as the contents manager makes them),
        and with ``sync`` each new one is made durable in its parent (fsync).

        Raises LandingRefused when a step is a file, leads out of the root or into a
        hidden folder; OSError for what may pass (EACCES, EROFS, ENOSPC, EIO)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            shown: list[str] = []
            for part in parts:
                shown.append(part)
                where = "/".join(shown)
                try:
                    nxt = _open_dir(part, fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):  # made meanwhile: fine
                        os.mkdir(part, 0o777, dir_fd=fd)
                    if sync:  # (made meanwhile by another landing: durable either way)
                        os.fsync(fd)
                    nxt = _open_dir(part, fd)
                except NotADirectoryError:
                    raise LandingRefused(
                        f"{where!r} is a file, not a folder; rename it or upload to another folder"
                    ) from None
                os.close(fd)
                fd = nxt
                self._check_real(fd, where)
            yield fd
        finally:
            os.close(fd)

    def ownership(self, folder_fd: int, existing: os.stat_result | None) -> Ownership:
        """What a file written there by the contents manager would get: an existing
        file written in place keeps its mode, owner and group; a new one gets 0o666
        minus the umask, the server's user, and the folder's group when the folder is
        setgid (else the server's group)."""
        if existing is not None and stat.S_ISREG(existing.st_mode):
            return Ownership(stat.S_IMODE(existing.st_mode), existing.st_uid, existing.st_gid)
        folder = os.fstat(folder_fd)
        gid = folder.st_gid if folder.st_mode & stat.S_ISGID else os.getegid()
        return Ownership(0o666 & ~self.umask, os.geteuid(), gid)


def _open_dir(name: str, dir_fd: int) -> int:
    """Open a folder by name (following a symlink: the caller checks where it led)."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise NotADirectoryError(exc.errno, exc.strerror, name) from None
        raise


def _real_path(fd: int) -> Path | None:
    """Where the folder open as ``fd`` really is now; None if it was removed (the
    kernel's name for it then leads elsewhere, or nowhere)."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
        there = os.stat(link)
    except OSError:
        return None
    here = os.fstat(fd)
    if (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
        return None
    return Path(link)


def is_permanent(exc: OSError) -> bool:
    """A landing error that retrying cannot fix (see ``PERMANENT_ERRNOS``)."""
    return exc.errno in PERMANENT_ERRNOS
