"""Benchmarks of the mirrorfuzz implementations (``python -m bench.scale``)."""
