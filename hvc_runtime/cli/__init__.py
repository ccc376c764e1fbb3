"""The command lines `hvc-run` and `hvc-eval`: thin layers over the Python API.

Their encoder and propagation options are generated from `Segmenter.from_checkpoint` and
`PropagationConfig` (`options`), so names, types and defaults live in the API alone.
"""

from hvc_runtime.cli.evaluate import eval_app
from hvc_runtime.cli.run import run_app

__all__ = ["eval_app", "run_app"]
