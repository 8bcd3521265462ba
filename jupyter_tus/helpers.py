"""Notebook helpers over the store behind the running server.

    import jupyter_tus
    jupyter_tus.list_uploads()            # newest first, finished or not
    df = jupyter_tus.load("sales.csv")    # an upload id, a FileInfo or a file name

The default store is the running server's: ``$JUPYTER_TUS_STORE`` (the class and
settings of a store that is not the file store, such as S3Store; credentials come from
the environment as the server's do), else ``$JUPYTER_TUS_DIR`` (the file store's
staging folder). The server extension sets them, so every kernel the server starts
inherits them; without either, ``<root_dir>/.tus`` of the running Jupyter server that
serves the kernel's working directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from . import display, summary
from .filestore import FileStore
from .store import DataStore, FileInfo, UploadIncomplete

__all__ = [
    "AmbiguousName",
    "LoadedBytes",
    "LoadedText",
    "Uploads",
    "default_store",
    "find_server",
    "get_info",
    "get_reader",
    "list_uploads",
    "load",
    "workspace_path",
    "workspace_root",
]

StoreLike = DataStore | str | os.PathLike | None
# The environment variable a server sets for its kernels when its store is not the file
# store: JSON {"class": "<import string>", "settings": {<trait>: <value>}}.
STORE_ENV = "JUPYTER_TUS_STORE"

_stores: dict[Path | str, DataStore] = {}

# Extension -> pandas reader (name of the pandas function, keyword arguments).
_PANDAS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("read_csv", {}),
    ".tsv": ("read_csv", {"sep": "\t"}),
    ".tab": ("read_csv", {"sep": "\t"}),
    ".parquet": ("read_parquet", {}),
    ".pq": ("read_parquet", {}),
    ".json": ("read_json", {}),
    ".jsonl": ("read_json", {"lines": True}),
    ".ndjson": ("read_json", {"lines": True}),
    ".xlsx": ("read_excel", {}),
    ".xlsm": ("read_excel", {}),
    ".xls": ("read_excel", {}),
    ".feather": ("read_feather", {}),
    ".arrow": ("read_feather", {}),
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
_PANDAS_TYPES = {
    "text/csv": ".csv",
    "text/tab-separated-values": ".tsv",
    "application/json": ".json",
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
}
_TEXT = {
    ".txt", ".text", ".md", ".rst", ".log", ".py", ".r", ".jl", ".js", ".ts", ".css",
    ".html", ".htm", ".xml", ".svg", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf",
    ".sql", ".sh", ".tex", ".bib", ".ipynb", ".geojson", ".c", ".h", ".cpp", ".java",
}  # fmt: skip
_TEXT_TYPES = ("text/", "application/xml", "application/x-yaml", "application/toml")
# What needs which extra, to name it in the error when it is missing.
_EXTRA_HINT = "pip install 'jupyter-tus[data]'"


class Uploads(list):
    """A list of :class:`FileInfo` that renders as a table in a notebook."""

    def _repr_html_(self) -> str:
        return html_table(list(self))


def html_table(infos: list[FileInfo]) -> str:
    """Uploads as an HTML table, destinations relative to the server's root_dir."""
    try:
        root = workspace_root()
    except Exception:  # never let a lookup break a display
        root = None
    return display.file_info_html(infos, root)


FileInfo.html_table = html_table  # a FileInfo in a notebook: see store.FileInfo


# --------------------------------------------------------------------------- the store


def find_server(cwd: str | os.PathLike | None = None) -> dict | None:
    """The running Jupyter server whose root_dir holds ``cwd`` (deepest root wins),
    else the only running server, else None."""
    servers = _running_servers()
    return _holding(servers, Path(cwd or os.getcwd()).resolve()) or (
        servers[0] if len(servers) == 1 else None
    )


def _running_servers() -> list[dict]:
    """jupyter-server's list of running servers (its runtime dir), those with a root."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # a kernel without jupyter_server
        return []
    return [s for s in list_running_servers() if s.get("root_dir") or s.get("notebook_dir")]


def _root(server: dict) -> Path:
    return Path(server.get("root_dir") or server["notebook_dir"]).expanduser().resolve()


def _holding(servers: list[dict], here: Path) -> dict | None:
    """The server whose root_dir holds ``here``, the deepest root if several do."""
    best: tuple[int, dict] | None = None
    for server in servers:
        root = _root(server)
        if here == root or root in here.parents:
            depth = len(root.parts)
            if best is None or depth > best[0]:
                best = (depth, server)
    return best[1] if best is not None else None


def default_store() -> DataStore:
    """The store behind the server: ``$JUPYTER_TUS_STORE`` (a store described by class
    and settings, e.g. S3Store), else ``$JUPYTER_TUS_DIR``, else ``<root_dir>/.tus`` of
    the running server (see :func:`find_server`). LookupError when there is none;
    ValueError when ``$JUPYTER_TUS_STORE`` is not a store description."""
    described = os.environ.get(STORE_ENV)
    if described:
        return _store_described(described)
    directory = os.environ.get("JUPYTER_TUS_DIR")
    if not directory:
        server = find_server()
        if server is None:
            raise LookupError(
                "jupyter-tus cannot find its upload store: no JUPYTER_TUS_DIR in the "
                "environment and no running Jupyter server serving "
                f"{os.getcwd()}. Set JUPYTER_TUS_DIR or pass store=FileStore(dir)."
            )
        directory = str(Path(server.get("root_dir") or server["notebook_dir"]) / ".tus")
    return _store_at(directory)


def _store_at(directory: str | os.PathLike) -> FileStore:
    key = Path(directory).expanduser().absolute()
    if key not in _stores:
        _stores[key] = FileStore(key, lock_timeout=5.0)
    return _stores[key]


def _store_described(described: str) -> DataStore:
    """The store ``$JUPYTER_TUS_STORE`` describes (one per description, reused)."""
    if described not in _stores:
        from traitlets.utils.importstring import import_item

        try:
            spec = json.loads(described)
            cls = import_item(spec["class"])
            settings = dict(spec.get("settings") or {})
        except (ValueError, KeyError, TypeError, ImportError) as exc:
            raise ValueError(f"${STORE_ENV} does not describe a store: {exc}") from exc
        _stores[described] = cls(lock_timeout=5.0, **settings)
    return _stores[described]


def _resolve_store(store: StoreLike) -> DataStore:
    if store is None:
        return default_store()
    if isinstance(store, DataStore):
        return store
    return _store_at(store)


def workspace_root(cwd: str | os.PathLike | None = None) -> Path | None:
    """The server's root_dir: the kernel's own server's (the running server whose pid
    is ``$JPY_PARENT_PID``, which jupyter_client sets for the kernels it starts), else
    the running server's that holds ``cwd``, else the parent of ``$JUPYTER_TUS_DIR``
    when that is the default ``<root>/.tus`` (the kernel's own server said so: it wins
    over an unrelated server that merely runs), else the only running server's; None
    if unknown."""
    servers = _running_servers()
    parent = os.environ.get("JPY_PARENT_PID")
    server = next((s for s in servers if parent and str(s.get("pid")) == parent), None)
    server = server or _holding(servers, Path(cwd or os.getcwd()).resolve())
    if server is not None:
        return _root(server)
    staging = os.environ.get("JUPYTER_TUS_DIR")
    if staging and Path(staging).name == ".tus":
        return Path(staging).parent.resolve()
    return _root(servers[0]) if len(servers) == 1 else None


def workspace_path(cwd: str | os.PathLike | None = None) -> str:
    """``cwd`` (default: the working directory) relative to the server's root_dir, as
    the tus ``path`` metadata wants it; "" (the root) when it is not under it."""
    here = Path(cwd or os.getcwd()).resolve()
    root = workspace_root(here)
    if root is not None:
        with contextlib.suppress(ValueError):
            rel = here.relative_to(root).as_posix()
            return "" if rel == "." else rel
    return ""


# --------------------------------------------------------------------------- queries


def list_uploads(store: StoreLike = None) -> Uploads:
    """Every upload in the store, finished or not, newest first."""
    return Uploads(_resolve_store(store).list_uploads())


def _upload_id(upload: str | FileInfo) -> str:
    return upload.id if isinstance(upload, FileInfo) else upload


def get_info(upload: str | FileInfo, store: StoreLike = None) -> FileInfo:
    """The current :class:`FileInfo` of an upload (an id, or a FileInfo to refresh).
    Raises :class:`~jupyter_tus.UploadNotFound` for an unknown id."""
    return _resolve_store(store).get_info(_upload_id(upload))


def get_reader(upload: str | FileInfo, store: StoreLike = None) -> BinaryIO:
    """A binary file object (seekable, a context manager) on an upload's bytes: the
    landed file once complete, else the bytes received so far."""
    return _resolve_store(store).get_reader(_upload_id(upload))


# --------------------------------------------------------------------------- load


def _progress(info: FileInfo) -> str:
    if info.size is None:
        return f"{info.offset} bytes received, total length not declared yet"
    percent = 100 * info.offset / info.size if info.size else 100.0
    return f"{info.offset} of {info.size} bytes received ({percent:.1f} %)"


REPR_LIMIT = 2000  # characters: a longer loaded text or bytes shows its start and its size


def _bounded_repr(value: str | bytes, unit: str) -> str:
    base = str.__repr__ if isinstance(value, str) else bytes.__repr__
    if len(value) <= REPR_LIMIT:
        return base(value)
    size = display.human_size(len(value.encode() if isinstance(value, str) else value))
    head = base(value[:100])  # at most ~400 characters, escapes included
    return f"<{len(value):,} {unit} ({size}), starting {head}>"


class LoadedBytes(bytes):
    """The ``bytes`` :func:`load` returns: bytes in every way, but a cell ending in it
    shows its start and size rather than flooding the page with megabytes."""

    def __repr__(self) -> str:
        return _bounded_repr(self, "bytes")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class LoadedText(str):
    """The ``str`` :func:`load` returns, with the same bounded display."""

    def __repr__(self) -> str:
        return _bounded_repr(self, "characters")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class AmbiguousName(ValueError):
    """A bare file name that names several files (uploads to different folders, or an
    upload and a file in the working directory); the message lists them."""


def _find(x: str | os.PathLike | FileInfo, store: StoreLike) -> tuple[str, FileInfo | None]:
    """Resolve what :func:`load` was given to (name for the format, upload or None).

    An upload id, or a FileInfo; a path with a folder ("data/x.csv": as the file
    browser names it, from the server's root, or a path from the working directory);
    or a bare name, which must name exactly one file: the uploads of that name (the
    newest per destination) and a file of that name in the working directory."""
    if isinstance(x, FileInfo):
        info = x
        with contextlib.suppress(LookupError):  # refresh: it may have finished since
            info = get_info(x.id, store)
        return info.filename, info
    name = os.fspath(x)
    here = Path(name).expanduser()
    try:
        uploads = list_uploads(store)
    except LookupError:  # no store: only files
        if here.is_file():
            return name, None
        raise
    by_id = next((u for u in uploads if u.id == name), None)
    if by_id is not None:
        return by_id.filename, by_id
    root = workspace_root()
    if "/" in name or os.sep in name:
        # the workspace file, or a store's own path (S3Store: relative to its prefix)
        wanted = {str(here.resolve()), name.strip("/")}
        if root is not None:
            wanted.add(str(root / name.strip("/")))
        found = next((u for u in uploads if u.path in wanted), None)
        if found is not None:
            return found.filename, found
        if here.is_file():
            return name, None
        raise FileNotFoundError(f"{name!r} is neither a file nor the destination of an upload")
    candidates: dict[str, tuple[str, FileInfo | None]] = {}
    for u in uploads:  # newest first: the newest upload per destination
        if u.filename == name:
            candidates.setdefault(u.path or f"(in the store) {u.id}", (u.filename, u))
    if here.is_file():
        candidates.setdefault(str(here.resolve()), (name, None))
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        raise FileNotFoundError(f"{name!r} is neither a file in {os.getcwd()} nor an upload")
    shown = []
    for where, (_, info) in candidates.items():
        place = summary.relative(where, root) or where
        shown.append(f"{place} (upload {info.id})" if info else f"{place} (a file here)")
    raise AmbiguousName(
        f"{name!r} names {len(candidates)} files: {', '.join(shown)}; pass an upload id"
        " or a path with its folder, as the file browser shows it"
    )


def _format(name: str, info: FileInfo | None, fmt: str | None) -> str:
    if fmt:
        return fmt if fmt.startswith(".") else "." + fmt
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION and len(suffixes) > 1:
        suffixes.pop()  # data.csv.gz: pandas decompresses from the path
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _PANDAS or suffix in _TEXT or suffix in (".npy", ".npz"):
        return suffix
    filetype = (info.metadata.get("filetype", "") if info else "").split(";")[0].strip()
    if filetype in _PANDAS_TYPES:
        return _PANDAS_TYPES[filetype]
    if filetype.startswith(_TEXT_TYPES):
        return ".txt"
    return suffix


def _need(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"jupyter_tus.load() needs {module} to read {what}: {_EXTRA_HINT} "
            f"(the 'data' extra: pandas, pyarrow, numpy, openpyxl)"
        ) from exc


def load(
    x: str | os.PathLike | FileInfo,
    *,
    format: str | None = None,
    store: StoreLike = None,
    encoding: str = "utf-8",
    **kwargs: Any,
) -> Any:
    """Load a finished upload, by id, :class:`FileInfo` or workspace file name.

    CSV, TSV, Parquet, JSON (and JSON lines), Excel and Feather give a pandas DataFrame;
    ``.npy`` a numpy array and ``.npz`` a dict of arrays; text types a ``str``; anything
    else ``bytes``. ``format`` (".csv", "parquet", ...) overrides the guess from the name
    and ``kwargs`` go to the parser. The file is read once, by the parser itself.
    An unfinished upload raises :class:`~jupyter_tus.UploadIncomplete` saying how far
    it got.
    """
    name, info = _find(x, store)
    if info is not None and not info.is_complete:
        raise UploadIncomplete(
            f"upload {info.id} ({info.filename}) is not finished yet: {_progress(info)}"
        )
    kind = _format(name, info, format)
    source: str | None = (info.path if info is not None else name) or None
    if info is not None and source is not None and not os.path.isabs(source):
        source = None  # a store's own path (S3Store: a key under its prefix)
    if source is None or not Path(source).is_file():
        source = None  # in the store (not landed, or not on a disk): read through it
    with contextlib.ExitStack() as stack:
        target: Any = source
        if target is None:
            assert info is not None
            target = stack.enter_context(get_reader(info, store))
        if kind in _PANDAS:
            function, defaults = _PANDAS[kind]
            pd = _need("pandas", f"{kind} files")
            if function in ("read_parquet", "read_feather"):
                _need("pyarrow", f"{kind} files")
            if function == "read_excel" and kind != ".xls":
                _need("openpyxl", f"{kind} files")
            return getattr(pd, function)(target, **{**defaults, **kwargs})
        if kind in (".npy", ".npz"):
            np = _need("numpy", f"{kind} files")
            loaded = np.load(target, **kwargs)
            if kind == ".npz":
                with loaded:
                    return {key: loaded[key] for key in loaded.files}
            return loaded
        text = kind in _TEXT
        f = stack.enter_context(open(target, "rb")) if isinstance(target, str) else target
        data = f.read()
        if text:
            return LoadedText(data, encoding)  # decoded straight into the result
        return LoadedBytes(data)
