"""hvc train: HVC self-supervised pre-training; builds on hvc_runtime."""
