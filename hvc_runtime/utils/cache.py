"""The one folder hvc keeps downloads and generated inputs in, so a single variable moves them all."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "HVC_HOME"


def hvc_home() -> Path:
    """`$HVC_HOME`, else `$XDG_CACHE_HOME/hvc`, else `~/.cache/hvc`."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hvc"
