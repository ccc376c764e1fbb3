"""Latency, throughput and memory benchmarks; `python -m benchmarks.latency --help`."""
