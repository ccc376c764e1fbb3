"""Which video files state their frame count, so that a count is never shown or checked where
the file holds none.

OpenCV gives a count for every file, but only some containers record one: MP4/MOV list every
frame in their index (the `moov` box), AVI states a total in its header. For the rest, FFmpeg
guesses duration × frame rate: wrong for variable frame rates (MPEG-TS, Matroska, fragmented
MP4 from phones and screen recorders), and nonsense (negative, huge) for raw H.264/H.265 and
MJPEG streams, which have neither. Those are counted by decoding, where a count is needed.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# the boxes an ISO media file (MP4, MOV, M4V, 3GP) can start with
ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}
MAX_TOP_BOXES = 64  # an indexed file has a handful; fragmented ones stop at their first moof


def states_frame_count(path: Path) -> bool:
    """Whether `path` is a container that records its frame count: an AVI, or an MP4/MOV with
    its index and no fragments."""
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return True
            if head[4:8] in ISO_FIRST_BOXES:
                return _indexed_iso_file(handle)
    except OSError:
        return False
    return False


def _indexed_iso_file(handle: BinaryIO) -> bool:
    """An ISO media file whose `moov` index lists its frames: it has one, and no `moof`
    fragments (their frames are in no index)."""
    indexed = False
    offset = 0
    for _ in range(MAX_TOP_BOXES):
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1 and len(header) == 16:
            size = struct.unpack(">Q", header[8:])[0]
        if kind == b"moof":
            return False
        indexed = indexed or kind == b"moov"
        if size < 8:  # 0: the box runs to the end of the file
            break
        offset += size
    return indexed
