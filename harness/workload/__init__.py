"""What both drivers need of the load: prompts, request plans and app assignment, the arrival shape and the
spawn schedule, trace replay, one logical request's attempt loop and its records, and the run directory.

Pure: no Locust, no gevent, no sockets. The Locust side (`harness.loadgen`) and the simulator
(`harness.sim`) both build on it; neither imports the other.
"""
