"""Data for the GPU calls, cut to fit what one call carries (64 MiB with the project tree).

`prep` (here) packs what `benchmarks.train_call` and `benchmarks.cause_call` read into one tar:
the DAVIS-2016 train frames (30 videos, ~71 MB), the 5 val sequences with their masks (~45 MB)
and, when given, an official HVC checkout; it cuts the tar into equal parts
`OUT/p0/part00`, `OUT/p1/part01`, … (two for DAVIS-2016), each beside a manifest and the commit,
so each part travels in its own call (`carry: ["OUT/pN"]`).

`receive` (on the device, one call per part, back to back: the machine keeps /tmp while warm)
stores the part under /tmp/hvc-carry; when every part is there it checks the tar's SHA-256
and unpacks it into /tmp/hvc-carry/data (`davis2016/`, `official-hvc/`, and `COMMIT`, which
the calls' commands pass on as `$HVC_COMMIT`: no `.git` travels). Receiving a part of
a bundle that is already unpacked does nothing.

    python -m benchmarks.gpu_carry prep --out .carry/issue16 --official .carry/official-hvc
    python3 -m benchmarks.gpu_carry receive .carry/issue16/p0        # device call 1
    python3 -m benchmarks.gpu_carry receive .carry/issue16/p1 && ...  # device call 2
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.gpu_calls import DAVIS2016, require_davis, split_names
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.provenance import git_revision

app = typer.Typer(add_completion=False, help=__doc__)
CALL_LIMIT = 64 * 2**20  # bytes one device call carries, project tree included
MARGIN = 2 * 2**20  # for files the tree gains before the call (records, caches)
RECEIVED = Path("/tmp/hvc-carry")
MANIFEST = "manifest.json"


def tree_bytes(root: Path) -> int:
    """Bytes of the working tree that travels with every call (tracked and untracked files
    that git does not ignore)."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum((root / name).stat().st_size for name in listed.split("\0") if name)


def clean(root: Path) -> bool:
    """Whether the tracked files are those of the commit (else the commit does not name what
    the calls run)."""
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
def prep(
    out: Annotated[Path, typer.Option(help="Git-ignored folder for the parts.")],
    data: Annotated[Path, typer.Option(help="DAVIS-2016 root.")] = DAVIS2016,
    official: Annotated[
        Path | None, typer.Option(help="Official HVC checkout to include (the cause call).")
    ] = None,
) -> None:
    """Pack the calls' data and cut it into parts that each fit one call."""
    with user_errors():
        davis = require_davis(data)
        root = Path(__file__).resolve().parents[1]
        room = CALL_LIMIT - tree_bytes(root) - MARGIN
        with tempfile.TemporaryDirectory(prefix="hvc-carry-") as tmp:
            bundle = Path(tmp) / "bundle.tar"
            with tarfile.open(bundle, "w") as tar:
                for file, name in bundle_members(davis, official):
                    tar.add(file, arcname=name, recursive=False)
            size = bundle.stat().st_size
            count = -(-size // room)
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
            f"{count} parts of ≤ {part_size / 2**20:.1f} MiB in {out}/p0..p{count - 1} "
            f"(tree {(CALL_LIMIT - room - MARGIN) / 2**20:.1f} MiB; {size / 2**20:.1f} MiB in all)"
        )


@app.command()
def receive(
    part: Annotated[Path, typer.Argument(help="A carried part folder (OUT/pN).")],
    into: Annotated[Path, typer.Option(help="Where parts gather and the data unpacks.")] = RECEIVED,
) -> None:
    """Keep a part; unpack the bundle into INTO/data once all parts are here."""
    with user_errors():
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
            raise HvcError(f"{parts}: the parts do not join to the prepared bundle (SHA-256)")
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
        (staging / "COMMIT").write_text(manifest["commit"] + "\n")  # no .git travels
        shutil.rmtree(unpacked, ignore_errors=True)
        staging.rename(unpacked)
        shutil.rmtree(into / "parts")
        print(f"unpacked {manifest['bytes'] / 2**20:.1f} MiB into {unpacked}")


if __name__ == "__main__":
    app()
