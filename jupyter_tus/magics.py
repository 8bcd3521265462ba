"""IPython extension: ``%load_ext jupyter_tus`` registers ``%uploads`` and ``%upload``."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring


@magics_class
class TusMagics(Magics):
    """``%uploads``: a table of the uploads; ``%upload [path]``: an upload widget."""

    @line_magic
    def uploads(self, line: str = "") -> Any:
        """Show every upload (name, size, progress, state, destination), newest first."""
        from .helpers import list_uploads

        return list_uploads()

    @magic_arguments()
    @argument("path", nargs="?", default=None, help="destination folder (relative to root)")
    @argument("--accept", default="", help="accepted file types, e.g. .csv,.parquet")
    @argument("--overwrite", action="store_true", help="replace files of the same name")
    @argument("--single", action="store_true", help="one file at a time")
    @line_magic
    def upload(self, line: str = "") -> Any:
        """Show an UploadWidget that uploads into ``path`` (default: the working folder)."""
        from .widget import UploadWidget

        args = parse_argstring(self.upload, line)
        widget = UploadWidget(
            path=args.path,
            accept=args.accept,
            overwrite=args.overwrite,
            multiple=not args.single,
        )
        # The last widget shown, for the next cell: `_upload_widget.uploads[-1]`.
        self.shell.user_ns["_upload_widget"] = widget
        return widget


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext jupyter_tus``)."""
    ipython.register_magics(TusMagics)
