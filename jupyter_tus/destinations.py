"""Where an upload may land: inside root_dir, never hidden, never clobbering.

The client names the destination with the ``filename`` and ``path`` metadata keys
(CONTRACT §3); this module turns them into an absolute path or refuses with a
reason that names the rule, never the server's own directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .store import DestinationExists, DestinationRefused

TRUE_VALUES = {"1", "true", "yes"}


@dataclass(frozen=True)
class Destination:
    path: Path  # absolute
    relative: str  # to root_dir, with forward slashes
    overwrite: bool


def _check_part(part: str, what: str, allow_hidden: bool) -> None:
    if "\x00" in part:
        raise DestinationRefused(f"{what} contains a NUL byte")
    if part in ("..", "."):
        raise DestinationRefused(f"{what} may not contain '{part}'")
    if part.startswith(".") and not allow_hidden:
        raise DestinationRefused(f"{what} names a hidden file or folder ({part!r})")
    if len(part.encode()) > 255:  # NAME_MAX: the OS would refuse it (ENAMETOOLONG)
        raise DestinationRefused(f"{what} has a name longer than 255 bytes")


def resolve(
    root_dir: str | os.PathLike, metadata: dict[str, str], *, allow_hidden: bool = False
) -> Destination | None:
    """The destination named by ``metadata``, or None when no ``filename`` is given
    (the upload then stays in the store, reachable by its id)."""
    filename = metadata.get("filename", "")
    if not filename:
        return None
    root = Path(os.path.realpath(root_dir))
    if "/" in filename or "\\" in filename:
        raise DestinationRefused("filename must be a name, not a path; put folders in 'path'")
    _check_part(filename, "filename", allow_hidden)
    folder = metadata.get("path", "").replace("\\", "/").strip("/")
    if metadata.get("path", "").startswith(("/", "\\")) or (len(folder) > 1 and folder[1] == ":"):
        raise DestinationRefused("path must be relative to the server's root directory")
    parts = [p for p in folder.split("/") if p]
    for part in parts:
        _check_part(part, "path", allow_hidden)
    relative = "/".join([*parts, filename])
    target = root.joinpath(*parts, filename)
    if len(str(target).encode()) > 4000:  # PATH_MAX is 4096
        raise DestinationRefused("path is too long")
    _check_folders(root, parts, allow_hidden)
    # Follow symlinks of the folders that exist: they must not lead out of the root.
    real_parent = Path(os.path.realpath(target.parent))
    if real_parent != root and root not in real_parent.parents:
        raise DestinationRefused("path leads outside the server's root directory")
    overwrite = metadata.get("overwrite", "").strip().lower() in TRUE_VALUES
    if os.path.islink(target):
        raise DestinationRefused(f"{relative!r} is a symbolic link")
    if target.is_dir():
        raise DestinationExists(f"{relative!r} is a folder")
    if target.exists() and not overwrite:
        raise DestinationExists(f"{relative!r} already exists; set overwrite to replace it")
    if target.exists() and not os.access(target, os.W_OK):
        raise DestinationRefused(f"{relative!r} is read-only; it cannot be replaced")
    existing = _nearest_existing(real_parent)
    if not os.access(existing, os.W_OK) or _read_only_mount(existing):
        raise DestinationRefused(f"folder {'/'.join(parts) or '/'!r} is read-only")
    return Destination(real_parent / filename, relative, overwrite)


def _check_folders(root: Path, parts: list[str], allow_hidden: bool) -> None:
    """Every existing folder on the way must be a folder (not a file), inside the root
    and not hidden once its symlinks are followed. (Checked again, step by step, when
    the file lands: see ``workspace.Workspace.open_folder``.)"""
    folder = root
    for i, part in enumerate(parts):
        folder = folder / part
        shown = "/".join(parts[: i + 1])
        if not os.path.lexists(folder):
            return  # created when the file lands
        real = Path(os.path.realpath(folder))
        if real != root and root not in real.parents:
            raise DestinationRefused("path leads outside the server's root directory")
        if not real.is_dir():
            raise DestinationRefused(
                f"{shown!r} is a file, not a folder; choose another folder or name"
            )
        if not allow_hidden and any(p.startswith(".") for p in real.relative_to(root).parts):
            raise DestinationRefused(f"path {shown!r} leads into a hidden folder")


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
