"""Small system helpers the rest of the runtime stands on: errors, atomic writes, signals,
devices, torchrun process groups, optional imports and provenance. They import nothing else
of hvc."""
