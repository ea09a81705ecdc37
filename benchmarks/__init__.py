"""ember vs a hand-written loop vs Lightning: same work, fresh processes, ratios.

Run ``python -m benchmarks.run`` (or ``--quick`` for a smoke version); see benchmarks/README.md.
"""
