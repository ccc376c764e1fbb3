"""Runs for a CUDA machine, each one command with a time budget.

Each writes its results as every part finishes, so a run stopped at its limit still leaves what
finished; each has a smoke mode that runs the same code at tiny sizes on a CPU.

- `benchmark.sh`: the benchmark suite's GPU figures, part by part (`bash benchmarks/gpu/benchmark.sh`);
- `train`: the default training recipe at the official budget, its encoder and J&F;
- `cause`: the default memory layout, channels-last and the official code, trained side by side;
- `bundle`: the training frames (and an official checkout) packed into parts of a chosen size,
  to copy to a remote machine and unpack there;
- `common`: what the Python runs share (records, the health yardstick, dev-set J&F).
"""
