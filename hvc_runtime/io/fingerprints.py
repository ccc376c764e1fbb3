"""What a result was made from, recorded in its summary, so that a job list resumed later
redoes a result whose inputs changed in place (a mask edited, a mask added to a folder, a
video re-exported under the same name) instead of keeping it.

Masks are small and edited by hand, so their content is hashed; videos and frame folders are
large, so their size and modification time stand for it (what `make` and `rsync` trust).
Checkpoints are recorded the same way: weights retrained into the same file are other weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hvc_runtime.io.frames import is_image_name

Fingerprint = dict[str, object]


def file_stamp(path: Path) -> Fingerprint:
    """Size and modification time of a large file (a video, a checkpoint)."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def video_fingerprint(video: Path) -> Fingerprint:
    """A video file's size and modification time; a frame folder's, of each of its frames."""
    video = Path(video)
    if not video.is_dir():
        return file_stamp(video)
    digest = hashlib.sha256()
    frames = sorted(p for p in video.iterdir() if is_image_name(p) and p.is_file())
    for frame in frames:
        stamp = file_stamp(frame)
        digest.update(f"{frame.name}\0{stamp['size']}\0{stamp['mtime_ns']}\n".encode())
    return {"frames": len(frames), "stamps_sha256": digest.hexdigest()}


def mask_fingerprint(mask: Path) -> Fingerprint:
    """The content hash of a mask file, or of a mask folder's masks (names and contents)."""
    mask = Path(mask)
    if not mask.is_dir():
        return {"sha256": hashlib.sha256(mask.read_bytes()).hexdigest()}
    digest = hashlib.sha256()
    masks = sorted(p for p in mask.iterdir() if is_image_name(p) and p.is_file())
    for file in masks:
        digest.update(f"{file.name}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode())
    return {"masks": len(masks), "sha256": digest.hexdigest()}


def input_fingerprints(video: Path, mask: Path) -> dict[str, Fingerprint]:
    """What a summary records of its inputs (`"inputs"`)."""
    return {"video": video_fingerprint(video), "mask": mask_fingerprint(mask)}


def weights_fingerprints(paths: list[Path]) -> dict[str, Fingerprint]:
    """Checkpoint files by absolute path, as a segmenter records what it loads (a missing
    file is left to the loader to name)."""
    return {str(Path(p).resolve()): file_stamp(p) for p in paths if Path(p).is_file()}


def changed_input(recorded: object, video: Path, mask: Path) -> str | None:
    """Which input differs from what a summary recorded (`recorded`), in words; None if none."""
    if not isinstance(recorded, dict):
        return "it does not record what its inputs were (made by an earlier version)"
    try:
        current = input_fingerprints(video, mask)
    except OSError:
        return "its inputs cannot be read now"
    if recorded.get("video") != current["video"]:
        what = "frame folder" if Path(video).is_dir() else "video"
        return f"the {what} {video} changed since it was made (size or modification time)"
    if recorded.get("mask") != current["mask"]:
        what = "masks in" if Path(mask).is_dir() else "mask"
        return f"the {what} {mask} changed since it was made"
    return None
