"""The discrete-event simulator: the live components' rules driven by events on a virtual clock.

`simulate` runs a scenario with no sockets and no sleeps and writes the same run directory as a live run.
"""

from harness.sim.run import simulate

__all__ = ["simulate"]
