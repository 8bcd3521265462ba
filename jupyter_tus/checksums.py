"""The tus checksum extension's algorithms, shared by every store.

``Upload-Checksum: <algorithm> <base64 of the raw digest>`` (tus 1.0.0, "Checksum");
crc32's digest is the 4-byte big-endian value of ``zlib.crc32``. A store feeds every
byte of one write to a hasher and compares ``digest()`` with the expected digest
before it counts the write (tusd: ``pkg/handler``'s checksum verification).

No I/O, no HTTP: stdlib only.
"""

from __future__ import annotations

import hashlib
import zlib

# What the server advertises in Tus-Checksum-Algorithm (the order is the header's).
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "sha512", "crc32")


class Hasher:
    """One interface over hashlib and zlib.crc32: ``update(bytes-like)``, ``digest()``
    (raw bytes: 20 for sha1, 16 for md5, 32 for sha256, 64 for sha512, 4 for crc32)."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc: int | None = 0 if algorithm == "crc32" else None
        self._hash = None if algorithm == "crc32" else hashlib.new(algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            self._hash.update(data)

    def digest(self) -> bytes:
        if self._hash is None:
            return self._crc.to_bytes(4, "big")
        return self._hash.digest()


def new_hasher(algorithm: str) -> Hasher:
    """A hasher for ``algorithm`` (one of ``CHECKSUM_ALGORITHMS``); ValueError else."""
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}")
    return Hasher(algorithm)
