"""A destination that refuses the final move for a while: the bytes stay safe, the
client hears why, and the file lands once the destination takes it."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import wait_events


@pytest.fixture
def make_read_only(jp_root_dir):
    """Make a workspace folder read-only, then writable again: a read-only mount as
    root (root ignores permission bits), permission bits otherwise."""
    mounted = []

    def read_only(folder):
        if os.geteuid() == 0:
            subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            mounted.append(folder)
        else:
            folder.chmod(0o555)

        def writable():
            if mounted:
                subprocess.run(["umount", str(mounted.pop())], check=True)
            else:
                folder.chmod(0o755)

        return writable

    yield read_only
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


async def test_failed_move_is_reported_and_retried(
    tus, tus_app, events, make_read_only, jp_root_dir, staging
):
    folder = jp_root_dir / "incoming"
    folder.mkdir()
    uid = await tus.create_id(6, {"filename": "late.txt", "path": "incoming"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    writable = make_read_only(folder)
    r = await tus.patch(uid, 3, b"def")
    assert r.code == 503
    assert b"all 6 bytes arrived" in r.body
    assert str(jp_root_dir).encode() not in r.body
    assert (staging / uid).read_bytes() == b"abcdef"  # nothing lost
    r = await tus.head(uid)  # the retry on the next request fails again, quietly
    assert r.code == 200 and r.headers["Upload-Offset"] == "6"
    assert not (folder / "late.txt").exists()
    writable()
    await tus_app._sweep()
    assert (folder / "late.txt").read_bytes() == b"abcdef"
    assert not (staging / uid).exists()
    await wait_events(events, 1)
    assert events[-1]["action"] == "completed" and events[-1]["path"] == "incoming/late.txt"
