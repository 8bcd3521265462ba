"""``jupyter tus``: upload files and folders to a Jupyter server from a terminal or a
script, resumably; list and cancel unfinished uploads. The console script
``jupyter-tus`` (so ``jupyter tus ...`` dispatches here); the work is
``jupyter_tus.client``'s. docs/cli.md is the user's guide.

Exit codes: 0 every file landed (or the listing/cancel worked); 1 a file did not land,
or the server refused, is not jupyter-tus, or the token is wrong; 2 a usage error;
130 interrupted (Ctrl-C): run the same command again to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

try:
    from . import client
    from .client import Landed, Progress
except ImportError as exc:  # httpx missing
    sys.exit(f"jupyter tus needs the cli extra: pip install 'jupyter-tus[cli]' ({exc})")

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``8M``, ``8MiB``, ``8mb``, ``1G``, ``65536`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8M, 64MiB, 1G)")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class LineProgress(Progress):
    """Plain lines on stderr when it is not a terminal: a line when a file starts
    (or resumes), one per tenth of a big file, one per note."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._tenths: dict[str, int] = {}

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, source: str, total: int, done: int) -> None:
        where = f", resuming at {human(done)}" if done else ""
        self._say(f"{source}: {human(total)}{where}")
        self._tenths[source] = done * 10 // total if total else 10

    def update(self, source: str, done: int, total: int) -> None:
        if total < 16 * client.MiB or source not in self._tenths:
            return
        tenth = done * 10 // total
        if tenth > self._tenths[source] and tenth < 10:
            self._tenths[source] = tenth
            self._say(f"{source}: {tenth * 10}% ({human(done)} of {human(total)})")

    def landed(self, landed: Landed) -> None:
        self._tenths.pop(landed.source, None)

    def failed(self, source: str, error: Exception) -> None:
        self._tenths.pop(source, None)

    def note(self, message: str) -> None:
        self._say(message)


class CliProgress(Progress):
    """Progress (tqdm bars on a terminal, else plain lines) plus what the command
    prints: each landed file on stdout (a line, or a JSON object with ``--json``),
    each failure on stderr."""

    def __init__(self, inner: Progress, as_json: bool) -> None:
        self.inner = inner
        self.as_json = as_json
        self.write = self._writer()

    def _writer(self) -> Any:
        if isinstance(self.inner, client.TqdmProgress):
            from tqdm import tqdm

            return lambda line, stream: tqdm.write(line, file=stream)
        return lambda line, stream: print(line, file=stream, flush=True)

    def begin(self, jobs: list[client.Job]) -> None:
        self.inner.begin(jobs)

    def start(self, source: str, total: int, done: int) -> None:
        self.inner.start(source, total, done)

    def update(self, source: str, done: int, total: int) -> None:
        self.inner.update(source, done, total)

    def landed(self, landed: Landed) -> None:
        self.inner.landed(landed)
        if self.as_json:
            line = json.dumps(landed.as_json())
        else:
            speed = landed.size / client.MiB / landed.seconds if landed.seconds else 0
            line = f"{landed.source} -> {landed.path} ({human(landed.size)}"
            line += f", {landed.seconds:.1f} s, {speed:.0f} MiB/s)"
            if landed.renamed:
                line += f"; {landed.requested!r} was taken meanwhile"
        self.write(line, sys.stdout)
        sys.stdout.flush()

    def failed(self, source: str, error: Exception) -> None:
        self.inner.failed(source, error)
        self.write(f"error: {source}: {error}", sys.stderr)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def close(self) -> None:
        self.inner.close()


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        help="the Jupyter server's URL with its base_url, e.g. http://127.0.0.1:8888/ or "
        "https://hub.example.org/user/NAME/ (default: the running local server)",
    )
    parser.add_argument(
        "--token",
        help="API token (default: $JUPYTER_TOKEN, $JUPYTERHUB_API_TOKEN, the running "
        "local server's); sent as 'Authorization: token ...', never printed",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter tus",
        description="Resumable uploads (tus) to a Jupyter server or JupyterHub.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{upload,list,cancel}")
    sub.required = True

    up = sub.add_parser(
        "upload",
        help="upload files and folders (run the same command again to resume)",
        description="Upload files and folders (a folder keeps its tree) to a Jupyter "
        "server's workspace. Interrupted, the same command run again continues where "
        "the server stopped receiving.",
    )
    up.add_argument("paths", nargs="+", metavar="PATH", help="files and folders")
    _server_args(up)
    up.add_argument(
        "--to",
        default="",
        metavar="FOLDER",
        help="destination folder, relative to the server's root (default: the root)",
    )
    up.add_argument("--overwrite", action="store_true", help="replace files that exist")
    up.add_argument(
        "--chunk-size",
        type=parse_size,
        metavar="SIZE",
        help="bytes per request (default 64M; never more than the server allows; halved "
        "when a proxy answers 413)",
    )
    up.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="N files at once, and a big file as N parts joined on the server (default 1)",
    )
    up.add_argument(
        "--checksum",
        metavar="ALGO",
        help="have the server check every chunk (sha1, md5, sha256, sha512, crc32); "
        "--json then reports each file's sha256",
    )
    up.add_argument("--json", action="store_true", help="one JSON object per landed file on stdout")
    up.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    ls = sub.add_parser("list", help="the server's uploads: unfinished, and finished today")
    _server_args(ls)
    ls.add_argument("--json", action="store_true", help="the server's JSON list")

    cancel = sub.add_parser("cancel", help="cancel unfinished uploads (their bytes go)")
    cancel.add_argument("ids", nargs="+", metavar="ID", help="upload ids (from 'list')")
    _server_args(cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "upload":
            return _upload(args)
        if args.command == "list":
            return _list(args)
        return _cancel(args)
    except (client.TusClientError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _upload(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        print("error: --parallel must be at least 1", file=sys.stderr)
        return 2
    server = client.find_server(args.server, args.token)
    progress = Progress()
    if args.quiet:
        pass
    elif sys.stderr.isatty() and _has_tqdm():
        progress = client.TqdmProgress(file=sys.stderr)
    else:
        progress = LineProgress()
    reporter = CliProgress(progress, args.json)
    run = client.Uploader(
        server,
        to=args.to,
        overwrite=args.overwrite,
        chunk_size=args.chunk_size,
        parallel=args.parallel,
        checksum=args.checksum,
        progress=reporter,
    )
    try:
        run.run(args.paths)
    except client.UploadFailed as exc:
        print(
            f"{len(exc.failures)} of {len(exc.failures) + len(exc.landed)} file(s) did not land",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        reporter.close()
        print(
            "\ninterrupted: run the same command again to resume where it stopped",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        # Worker threads may be blocked sending; the uploads are recorded, nothing
        # is left to clean up: leave now.
        os._exit(130)
    return 0


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401 - the cli extra brings it
    except ImportError:
        return False
    return True


def _list(args: argparse.Namespace) -> int:
    uploads = client.list_uploads(args.server, args.token)
    if args.json:
        print(json.dumps(uploads, indent=1))
        return 0
    if not uploads:
        print("no uploads (unfinished, or finished in the last day)")
        return 0
    rows = [("ID", "STATE", "RECEIVED", "DESTINATION", "LAST ACTIVITY")]
    for u in uploads:
        size = u.get("size")
        received = human(u.get("offset") or 0)
        if size:
            received += f" of {human(size)} ({100 * (u.get('offset') or 0) // size}%)"
        where = u.get("landed_path") or u.get("destination") or "(in the store)"
        rows.append((u["id"], u["state"], received, where, u.get("last_activity") or ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths, strict=False)]
        print("  ".join([*cells, str(r[-1])]))
        if r is not rows[0] and uploads[rows.index(r) - 1].get("message"):
            print(f"    {uploads[rows.index(r) - 1]['message']}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    status = 0
    for upload_id in args.ids:
        try:
            client.cancel(upload_id, args.server, args.token)
        except client.UploadRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"cancelled {upload_id}")
    return status


if __name__ == "__main__":
    sys.exit(main())
