"""The weights hvc knows by name: what each is, where it is published, and how it is checked.

`--checkpoint hvc-ytb` or `--moco moco-v1` name one of `MODELS`; a plain `https://` (or `http://`)
URL names a file of one's own. Either way the value becomes a `RemoteWeights`: the file to
download (mirrors in order), the cache name it is kept under and, for a file inside an archive,
the member to take out. `hvc_runtime.encoder.hub` fetches and checks it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from hvc_runtime.utils.errors import HvcError, OptionError

Role = Literal["checkpoint", "moco"]  # the option a file is given as
MIRROR_VARIABLE = "HVC_WEIGHTS_URL"
URL_SCHEMES = ("https://", "http://")


@dataclass(frozen=True)
class Checksum:
    """A published digest, or its first characters (MoCo's README gives 8 hex digits of md5)."""

    algorithm: str
    prefix: str

    def matches(self, hexdigest: str) -> bool:
        return hexdigest.startswith(self.prefix)


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its cache name, its URLs (tried in order), its published checksum."""

    filename: str
    urls: tuple[str, ...]
    checksum: Checksum | None = None


@dataclass(frozen=True)
class RemoteWeights:
    """Weights that come from the network: `name` as the user gave it, the `download`, and the
    file inside it when the download is an archive (`member`)."""

    name: str
    role: Role
    download: RemoteFile
    member: str | None = None
    summary: str = ""

    @property
    def filename(self) -> str:
        """The name of the weights file in the cache (the member's, or the download's)."""
        return self.member or self.download.filename

    @property
    def stem(self) -> str:
        """A short name for files made from these weights: the model's name, or the URL's
        file name without its suffix."""
        if not self.name.startswith(URL_SCHEMES):
            return self.name
        return Path(_url_basename(self.name)).stem


HVC_RELEASE = RemoteFile(
    "releases_models.zip",
    (
        "https://github.com/PGSmall/HVC/releases/download/v0.1/releases_models.zip",
        "https://github.com/Anonymous-SSVOS/HVC/releases/download/v0.1/releases_models.zip",
    ),
)
MOCO_V1 = RemoteFile(
    "moco_v1_200ep_pretrain.pth.tar",
    (
        "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v1_200ep/"
        "moco_v1_200ep_pretrain.pth.tar",
    ),
    Checksum("md5", "b251726a"),
)
MODELS: dict[str, RemoteWeights] = {
    model.name: model
    for model in (
        *(
            RemoteWeights(
                f"hvc-{short}",
                "checkpoint",
                HVC_RELEASE,
                f"hvc_{short}.pth",
                f"the authors' HVC ResNet-18 trained on {data}",
            )
            for short, data in (
                ("ytb", "YouTube-VOS"),
                ("coco", "COCO"),
                ("voc", "PASCAL VOC"),
                ("msra", "MSRA10k"),
            )
        ),
        RemoteWeights("moco-v1", "moco", MOCO_V1, summary="MoCo-v1 ResNet-50 (200 epochs)"),
    )
}
_MISPLACED = {
    "checkpoint": "is fused with an HVC encoder, not an encoder itself",
    "moco": "is an HVC encoder, not the MoCo-v1 ResNet-50 fused with one",
}


def archive_members(download: RemoteFile) -> list[str]:
    """The weights files the registry expects inside an archive download."""
    return [
        m.member for m in MODELS.values() if m.download.filename == download.filename and m.member
    ]


def remote_weights(value: str | Path, role: Role) -> RemoteWeights | None:
    """What `value` names when it is a model name or a URL; None when it is a local path.

    An existing file or folder of that name is always the local one."""
    text = str(value)
    if not isinstance(value, str) or Path(text).exists():
        return None
    if text in MODELS:
        model = MODELS[text]
        if model.role != role:
            raise OptionError(role, text, f"{model.summary} {_MISPLACED[role]}")
        return replace(model, download=_mirrored(model.download))
    if text.startswith(URL_SCHEMES):
        return RemoteWeights(text, role, RemoteFile(_url_filename(text), (text,)))
    return None


def model_names(role: Role) -> list[str]:
    return [name for name, model in MODELS.items() if model.role == role]


def _mirrored(download: RemoteFile) -> RemoteFile:
    """`download` from the mirrors in HVC_WEIGHTS_URL (base URLs, space-separated, holding the
    files under their published names) instead of the public ones, when it is set."""
    bases = os.environ.get(MIRROR_VARIABLE, "").split()
    for base in bases:
        if not base.startswith(URL_SCHEMES):
            raise HvcError(f"{MIRROR_VARIABLE} {base!r}: not an http(s):// URL")
    if not bases:
        return download
    return replace(download, urls=tuple(f"{b.rstrip('/')}/{download.filename}" for b in bases))


def _url_basename(url: str) -> str:
    """The file name a URL ends in, reduced to safe characters (its suffix says the format)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    return base.lstrip(".") or "weights"


def _url_filename(url: str) -> str:
    """A cache name for a URL's file: its own name after a digest of the whole URL (two URLs
    ending in the same name are different files)."""
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{_url_basename(url)}"
