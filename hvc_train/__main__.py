"""`python -m hvc_train` (and `torchrun ... -m hvc_train`) runs hvc-train."""

from hvc_train.cli import app

app()
