"""Checksums of a bench bag: per frame (BLAKE2b of the serialized messages) and per MCAP chunk (CRC-32)."""

from __future__ import annotations

import hashlib
import os

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_CHUNK_OP, _FOOTER_OP = 0x06, 0x02


def set_mcap_chunk_crcs(path: str | os.PathLike[str]) -> int:
    """Write the CRC-32 of each chunk's uncompressed records into an MCAP file, in place.

    A chunk record is: opcode, length (u64), start and end time (u64 each), uncompressed
    size (u64), uncompressed CRC (u32, 0 = not computed), compression (u32 length +
    name), compressed size (u64), the records.  Only the CRC bytes change.  Returns the
    number of chunks updated; a file this function cannot parse is left as it is.
    """
    import struct
    from binascii import crc32

    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    updated = 0
    with open(path, "r+b") as fh:
        data = fh.read()
        if not data.startswith(_MCAP_MAGIC):
            return 0
        offset = len(_MCAP_MAGIC)
        patches: list[tuple[int, int]] = []
        while offset + 9 <= len(data):
            op = data[offset]
            (length,) = struct.unpack_from("<Q", data, offset + 1)
            body = offset + 9
            if op == _FOOTER_OP or body + length > len(data):
                break
            if op == _CHUNK_OP:
                (size,) = struct.unpack_from("<Q", data, body + 16)
                (crc,) = struct.unpack_from("<I", data, body + 24)
                (name_len,) = struct.unpack_from("<I", data, body + 28)
                compression = data[body + 32 : body + 32 + name_len].decode()
                (compressed_size,) = struct.unpack_from("<Q", data, body + 32 + name_len)
                start = body + 40 + name_len
                if crc == 0 and compression in DECOMPRESSORS:
                    raw = DECOMPRESSORS[compression](data[start : start + compressed_size], size)
                    patches.append((body + 24, crc32(raw)))
            offset = body + length
        for where, value in patches:
            fh.seek(where)
            fh.write(struct.pack("<I", value))
            updated += 1
    return updated


def message_digest(raw: bytes | memoryview) -> bytes:
    """Digest of one serialized message."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def frame_checksum(image_digest: bytes, label_digest: bytes) -> str:
    """A frame's checksum (hex) from its image and label message digests."""
    return hashlib.blake2b(image_digest + label_digest, digest_size=16).hexdigest()
