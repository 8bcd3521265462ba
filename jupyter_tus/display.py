"""HTML rendering of uploads for notebooks (``FileInfo._repr_html_``, ``%uploads``)."""

from __future__ import annotations

import contextlib
import datetime
import html
from collections.abc import Sequence
from pathlib import Path

from .store import FileInfo

_STYLE = (
    "<style>.jtus-table td,.jtus-table th{padding:2px 8px;text-align:left}"
    ".jtus-bar{display:inline-block;width:80px;height:8px;background:#ddd;"
    "border-radius:4px;vertical-align:middle;overflow:hidden}"
    ".jtus-bar>span{display:block;height:100%;background:#4caf50}</style>"
)


def human_size(n: int | None) -> str:
    """1536 -> '1.5 KiB'; None -> '?'."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def state(info: FileInfo) -> str:
    """One word for where an upload stands, the words of the server's list and the
    front ends (``summary.state``)."""
    from .summary import state as summary_state

    return summary_state(info)


def fraction(info: FileInfo) -> float:
    """Share of the bytes received, 0..1 (0 while the length is unknown)."""
    if info.is_complete:
        return 1.0
    if not info.size:
        return 0.0
    return min(1.0, info.offset / info.size)


def destination(info: FileInfo, root: Path | None = None) -> str:
    """Where the upload lands: relative to the server's root_dir (as the file browser
    names it) when under it, else the absolute path."""
    if not info.path:
        return "(in the store)"
    if root is not None:
        with contextlib.suppress(ValueError):
            return Path(info.path).relative_to(root).as_posix()
    return info.path


def file_info_html(infos: Sequence[FileInfo], root: Path | None = None) -> str:
    """A table of uploads: name, size, progress, state, destination (relative to
    ``root``, the server's root_dir, when under it), id, created."""
    if not infos:
        return "<p><em>No uploads.</em></p>"
    rows = []
    for info in infos:
        frac = fraction(info)
        progress = (
            f'<span class="jtus-bar"><span style="width:{frac * 100:.1f}%"></span></span> '
            f"{frac * 100:.0f}%"
        )
        created = datetime.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M:%S")
        cells = [
            html.escape(info.filename),
            html.escape(human_size(info.size)),
            progress,
            html.escape(state(info)),
            html.escape(destination(info, root)),
            f"<code>{html.escape(info.id)}</code>",
            html.escape(created),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("name", "size", "progress", "state", "destination", "id", "created")
    )
    return (
        f'{_STYLE}<table class="jtus-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
