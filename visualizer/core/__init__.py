"""Pure compute: torch, numpy, scipy, networkx. Never imports Qt (checked by tests/test_layers.py)."""
