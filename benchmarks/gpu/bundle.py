"""The GPU runs' data, packed for a remote machine and unpacked there.

`pack` packs what `benchmarks.gpu.train` and `benchmarks.gpu.cause` read into one tar: the
DAVIS-2016 train frames (30 videos, ~71 MB), the val sequences with their masks (~45 MB for
5 sequences) and, when given, an official HVC checkout; it cuts the tar into parts of at most
`--part-mib` MiB (default: one part), `OUT/p0/part00`, `OUT/p1/part01`, …, each folder with a
manifest and the commit, so each folder can be copied on its own.

`unpack` (on the remote machine) keeps the parts it is given under INTO; once every part is
there it checks the tar's SHA-256 and unpacks it into INTO/data (`davis2016/`, `official-hvc/`,
and `COMMIT`, for `HVC_COMMIT` where the project was copied without `.git`). Parts may arrive one
command at a time; unpacking a part of a bundle that is already unpacked does nothing.

    python -m benchmarks.gpu.bundle pack --out bundle --part-mib 50 --official path/to/HVC
    # copy the project and bundle/p0, bundle/p1, … to the CUDA machine, then there:
    python3 -m benchmarks.gpu.bundle unpack bundle/p0 bundle/p1
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.gpu.common import DAVIS2016, require_davis, split_names
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError, OptionError
from hvc_runtime.utils.provenance import git_revision

app = typer.Typer(add_completion=False, help=__doc__)
UNPACKED = Path("/tmp/hvc-bundle")
MANIFEST = "manifest.json"


def clean(root: Path) -> bool:
    """Whether the tracked files are those of the commit (else the commit does not name the code
    that will run on the data)."""
    return subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD"]).returncode == 0


def bundle_members(davis: Path, official: Path | None) -> list[tuple[Path, str]]:
    """(file, name in the tar): train frames and list, val frames, masks and list, and the
    official checkout's files."""
    members: list[tuple[Path, str]] = []
    for split, kinds in (("train", ("JPEGImages",)), ("val", ("JPEGImages", "Annotations"))):
        listing = davis / "ImageSets" / "480p" / f"{split}.txt"
        members.append((listing, f"davis2016/ImageSets/480p/{split}.txt"))
        for name in split_names(davis, split):
            for kind in kinds:
                folder = davis / kind / "480p" / name
                members += [
                    (file, f"davis2016/{kind}/480p/{name}/{file.name}")
                    for file in sorted(folder.iterdir())
                ]
    if official is not None:
        if not (official / "train_vos.py").is_file():
            raise HvcError(f"{official}: not an official HVC checkout (no train_vos.py)")
        members += [
            (file, f"official-hvc/{file.relative_to(official)}")
            for file in sorted(official.rglob("*"))
            if file.is_file() and "__pycache__" not in file.parts
        ]
    return members


@app.command()
def pack(
    out: Annotated[Path, typer.Option(help="Folder for the parts (OUT/p0, OUT/p1, …).")],
    data: Annotated[Path, typer.Option(help="DAVIS-2016 root.")] = DAVIS2016,
    official: Annotated[
        Path | None, typer.Option(help="Official HVC checkout to include (for the cause run).")
    ] = None,
    part_mib: Annotated[
        float | None, typer.Option(help="Largest part, in MiB (default: one part).")
    ] = None,
) -> None:
    """Pack the GPU runs' data and cut it into parts of at most --part-mib MiB."""
    with user_errors():
        if part_mib is not None and not (math.isfinite(part_mib) and part_mib > 0):
            raise OptionError("part_mib", part_mib, "must be a positive number of MiB")
        davis = require_davis(data)
        root = Path(__file__).resolve().parents[2]
        with tempfile.TemporaryDirectory(prefix="hvc-bundle-") as tmp:
            bundle = Path(tmp) / "bundle.tar"
            with tarfile.open(bundle, "w") as tar:
                for file, name in bundle_members(davis, official):
                    tar.add(file, arcname=name, recursive=False)
            size = bundle.stat().st_size
            count = 1 if part_mib is None else max(1, math.ceil(size / (part_mib * 2**20)))
            part_size = -(-size // count)
            digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
            label = git_revision() + ("" if clean(root) else "+uncommitted")
            for earlier in out.glob("p*/"):  # only an earlier bundle's parts, nothing else
                if (earlier / MANIFEST).is_file():
                    shutil.rmtree(earlier)
            with bundle.open("rb") as source:
                for k in range(count):
                    folder = out / f"p{k}"
                    folder.mkdir(parents=True)
                    (folder / f"part{k:02d}").write_bytes(source.read(part_size))
                    manifest = {"parts": count, "sha256": digest, "bytes": size, "commit": label}
                    (folder / MANIFEST).write_text(json.dumps(manifest) + "\n")
        print(
            f"{count} part{'s' * (count > 1)} of ≤ {part_size / 2**20:.1f} MiB in "
            f"{out}/p0..p{count - 1} ({size / 2**20:.1f} MiB in all)"
        )


def keep_part(part: Path, into: Path) -> None:
    """Store one part folder's part under INTO; unpack the bundle once all its parts are in."""
    manifest = json.loads((part / MANIFEST).read_text())
    unpacked = into / "data"
    marker = unpacked / ".sha256"
    if marker.is_file() and marker.read_text().strip() == manifest["sha256"]:
        print(f"already unpacked in {unpacked}")
        return
    parts = into / "parts" / manifest["sha256"][:16]  # another bundle's parts stay apart
    parts.mkdir(parents=True, exist_ok=True)
    for file in part.glob("part*"):
        with atomic_path(parts / file.name) as tmp:
            shutil.copyfile(file, tmp)
    have = sorted(parts.glob("part*"))
    if len(have) < manifest["parts"]:
        print(f"part {len(have)} of {manifest['parts']} kept in {parts}")
        return
    digest = hashlib.sha256()
    for file in have:
        digest.update(file.read_bytes())
    if digest.hexdigest() != manifest["sha256"]:
        raise HvcError(f"{parts}: the parts do not join to the packed bundle (SHA-256)")
    staging = into / "data.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryFile() as joined:
        for file in have:
            with file.open("rb") as source:
                shutil.copyfileobj(source, joined)
        joined.seek(0)
        with tarfile.open(fileobj=joined) as tar:
            tar.extractall(staging, filter="data")
    (staging / ".sha256").write_text(manifest["sha256"] + "\n")
    (staging / "COMMIT").write_text(manifest["commit"] + "\n")  # for a copy without .git
    shutil.rmtree(unpacked, ignore_errors=True)
    staging.rename(unpacked)
    shutil.rmtree(into / "parts")
    print(f"unpacked {manifest['bytes'] / 2**20:.1f} MiB into {unpacked}")


@app.command()
def unpack(
    parts: Annotated[list[Path], typer.Argument(help="Part folders (OUT/pN of pack).")],
    into: Annotated[Path, typer.Option(help="Where parts gather and the data unpacks.")] = UNPACKED,
) -> None:
    """Keep the parts; unpack the bundle into INTO/data once all its parts are here."""
    with user_errors():
        for part in parts:
            if not (part / MANIFEST).is_file():
                raise HvcError(f"{part}: not a part folder of a packed bundle (no {MANIFEST})")
            keep_part(part, into)


if __name__ == "__main__":
    app()
