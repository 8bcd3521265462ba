"""Disk full: a real small tmpfs under the server's root_dir (we run as root); where
mounting is not permitted, a faked small disk inside the server process instead."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import Client, file_sha256, seed_from_env, server, sha256, staging_problems

MiB = 1024 * 1024


class TmpfsDisk:
    kind = "tmpfs"

    def __init__(self, mount: Path, size: int) -> None:
        self.mount = mount
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
        self.filler = mount / "filler.bin"
        self.env: dict[str, str] = {}

    def free(self) -> int:
        return shutil.disk_usage(self.mount).free

    def fill(self, leave: int) -> None:
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(self.free() - leave, 0))

    def release(self) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], check=False)


class FakeDisk:
    kind = "faked"

    def __init__(self, mount: Path, size: int) -> None:
        self.mount = mount
        self.file = mount.parent / "free-bytes"
        self.file.write_text(str(size))
        self.env = {"TUS_FAKE_FREE_FILE": str(self.file)}

    def free(self) -> int:
        return int(self.file.read_text())

    def fill(self, leave: int) -> None:
        self._kept = self.free() - leave
        self.file.write_text(str(leave))

    def release(self) -> None:
        self.file.write_text(str(self.free() + self._kept))

    def close(self) -> None:
        pass


@pytest.fixture
def small_disk(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    try:
        if os.environ.get("TUS_FAKE_DISK"):  # to test the fallback where mount works
            raise PermissionError
        disk = TmpfsDisk(root, 12 * MiB)
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError):
        disk = FakeDisk(root, 12 * MiB)
    proc = server(root, env=disk.env)
    try:
        proc.start()
        yield disk, proc
    finally:
        proc.stop()
        disk.close()


def test_enospc_mid_patch_is_507_keeps_bytes_and_resumes(small_disk, capsys):
    disk, proc = small_disk
    with capsys.disabled():
        print(f"\n[disk full] using a {disk.kind} disk")
    root = disk.mount
    c = Client(proc)
    data = random.Random(seed_from_env()).randbytes(6 * MiB)
    uid = c.create_id(len(data), {"filename": "big.bin"})
    disk.fill(leave=2 * MiB)
    r = c.patch(uid, 0, data)
    assert r.status_code == 507, (r.status_code, r.text)
    assert "full" in r.json()["message"]
    assert "Traceback" not in r.text and str(root) not in r.text
    r = c.head(uid)
    assert r.status_code == 200
    kept = int(r.headers["Upload-Offset"])
    staged = (root / ".tus" / uid).read_bytes()
    assert 0 < kept <= len(staged), (kept, len(staged))
    assert staged[:kept] == data[:kept]
    assert not (root / "big.bin").exists()
    disk.release()
    r = c.patch(uid, kept, data[kept:])
    assert r.status_code == 204, r.text
    assert file_sha256(root / "big.bin") == sha256(data)
    assert not staging_problems(root / ".tus")


def test_creation_larger_than_free_space_is_507_with_numbers(small_disk):
    disk, proc = small_disk
    c = Client(proc)
    size = disk.free() + 5 * MiB
    r = c.create(size, {"filename": "huge.bin"})
    assert r.status_code == 507, (r.status_code, r.text)
    message = r.json()["message"]
    assert str(size) in message
    free_in_message = [int(w) for w in message.replace(",", " ").split() if w.isdigit()]
    assert any(w != size for w in free_in_message), message
    assert str(disk.mount) not in r.text
    staged = [p.name for p in (disk.mount / ".tus").iterdir()]
    assert not [n for n in staged if not n.endswith(".lock") and n != ".jupyter-tus-store"]
    # a deferred length declared too large is refused the same way
    uid = c.create_id(None, {"filename": "later.bin"})
    r = c.patch(uid, 0, b"x", headers={"Upload-Length": str(size)})
    assert r.status_code == 507, (r.status_code, r.text)
    assert os.path.exists(disk.mount / ".tus" / uid)
