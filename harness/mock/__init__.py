"""The mock Azure OpenAI backend pool: one ASGI app per AOAI resource of the scenario.

>>> from harness.clock import VirtualClock
>>> from harness.scenario import BackendInstance
>>> app = build_mock_app(BackendInstance(), VirtualClock(), MemoryLog(), seed=0)
"""

from harness.mock.app import build_mock_app
from harness.mock.log import BACKEND_LOG_NAME, BackendLog, JsonlLog, MemoryLog, NullLog
from harness.mock.pool import build_pool, mock_instances

__all__ = [
    "BACKEND_LOG_NAME",
    "BackendLog",
    "JsonlLog",
    "MemoryLog",
    "NullLog",
    "build_mock_app",
    "build_pool",
    "mock_instances",
]
