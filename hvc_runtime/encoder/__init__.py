"""Everything that turns a file into a running encoder: the network, checkpoints (ours and the
official ones), the published models fetched by name or URL into a cache (`hub`), exported
artifacts and their formats, precisions, and the backends that run them
(`loading.load_encoder_backend` picks one)."""
