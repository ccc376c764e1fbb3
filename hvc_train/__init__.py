"""hvc train: HVC self-supervised pre-training (see issue 3); builds on hvc_runtime."""
