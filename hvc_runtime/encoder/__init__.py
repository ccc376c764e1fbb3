"""Everything that turns a file into a running encoder: the network, checkpoints (ours and the
official ones), exported artifacts and their formats, precisions, and the backends that run
them (`loading.load_encoder_backend` picks one)."""
