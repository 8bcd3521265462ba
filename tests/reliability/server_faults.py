"""A jupyter config file (``jupyter server --config=<this file>``) that arms crash
points inside the server process, for the torture tests.

Traitlets executes config files as Python, so this runs inside the server before the
extension starts. ``TUS_CRASH=<point>:<n>`` makes the process SIGKILL itself at the n-th
time it passes ``<point>`` (counted from process start, so recovery at startup counts):

    write            after a piece of a PATCH body reached the data file (mid-PATCH)
    replace_before   an info temp file is written, the rename not done (between the
                     data write and the info update)
    replace_after    right after the info rename
    fsync            before an fsync of the store
    link_before      before the link of a finished file into the workspace (final move)
    link_after       linked into the workspace, staged data not yet removed
    copy             after one partial's bytes were copied into a final (concatenation)
    unlink           before the store removes one of its files (termination, cleanup,
                     end of landing, partials after a concatenation)
    truncate         before a data file is cut back (checksum mismatch, recovery)

When the point fires, ``<point>:<n>`` is appended to ``$TUS_CRASH_LOG``. Only the store's
own calls are affected (the ``os``/``open`` names of jupyter_tus.filestore are wrapped).

``TUS_FAKE_FREE_FILE=<path>`` fakes a small disk where a tmpfs cannot be mounted: the
file holds the free bytes; the store's writes fail with ENOSPC past them, and its
free-space check reads them.
The extension list is trimmed to jupyter_tus so that restarts are quick.
"""

import os
import pathlib
import signal

c = get_config()  # noqa: F821 - provided by traitlets
c.ServerApp.jpserver_extensions = {
    "jupyter_tus": True,
    "jupyterlab": False,
    "notebook_shim": False,
    "jupyter_lsp": False,
    "jupyter_server_terminals": False,
}

# `kill -USR2 <pid>` dumps every thread's stack into the server log (hangs)
import faulthandler  # noqa: E402

faulthandler.register(signal.SIGUSR2, all_threads=True)

_spec = os.environ.get("TUS_CRASH", "")
_free_file = os.environ.get("TUS_FAKE_FREE_FILE")
if _spec or _free_file:
    import errno
    import shutil

    from jupyter_tus import filestore as _fs

    _point, _, _n = (_spec or "none:0").partition(":")
    _n = int(_n)
    _counts = {}
    _log = os.environ.get("TUS_CRASH_LOG")

    def _hit(name):
        if name != _point:
            return
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] == _n:
            if _log:
                with open(_log, "a") as f:
                    f.write(f"{_spec}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    class _OS:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            _hit("replace_before")
            os.replace(src, dst)
            _hit("replace_after")

        def link(self, src, dst, **kw):
            _hit("link_before")
            os.link(src, dst, **kw)
            _hit("link_after")

        def rename(self, src, dst, **kw):  # the final move with overwrite
            _hit("link_before")
            os.rename(src, dst, **kw)
            _hit("link_after")

        def unlink(self, path, **kw):  # staging debris, and the copy's temp name
            if "dir_fd" in kw or f"{os.sep}.tus{os.sep}" in str(path):
                _hit("unlink")
            os.unlink(path, **kw)

        def fsync(self, fd):
            _hit("fsync")
            os.fsync(fd)

        def copy_file_range(self, *args):
            n = os.copy_file_range(*args)
            if n:
                _hit("copy")
            return n

    _fs.os = _OS()

    _orig_write = _fs.FileChunkWriter.write

    def _write(self, data):
        _orig_write(self, data)
        _hit("write")

    _fs.FileChunkWriter.write = _write

    _staging = f"{os.sep}.tus{os.sep}"
    _orig_unlink = pathlib.Path.unlink

    def _unlink(self, missing_ok=False):
        if _staging in str(self) or str(self).endswith(".tus-tmp"):
            _hit("unlink")
        return _orig_unlink(self, missing_ok=missing_ok)

    pathlib.Path.unlink = _unlink

    class _File:
        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def truncate(self, *args):
            _hit("truncate")
            return self._f.truncate(*args)

        def write(self, data):
            if not _free_file:
                return self._f.write(data)
            with open(_free_file) as f:
                free = int(f.read())
            n = len(data)
            if n > free:
                if free:
                    self._f.write(bytes(data)[:free])
                _set_free(0)
                raise OSError(errno.ENOSPC, "No space left on device (fake)")
            _set_free(free - n)
            return self._f.write(data)

    def _set_free(n):
        with open(_free_file, "w") as f:
            f.write(str(n))

    class _Shutil:
        def __getattr__(self, name):
            return getattr(shutil, name)

        def disk_usage(self, path):
            usage = shutil.disk_usage(path)
            if not _free_file:
                return usage
            with open(_free_file) as f:
                return usage._replace(free=int(f.read()))

    _fs.shutil = _Shutil()

    def _open(*args, **kwargs):
        return _File(open(*args, **kwargs))

    _fs.open = _open
