"""The reference gateway: Azure API Management's GenAI-gateway policies in front of a backend pool.

>>> from harness.clock import VirtualClock
>>> from harness.scenario import load_scenario_text
>>> app = build_gateway_app(load_scenario_text("{}"), VirtualClock(), {"aoai": "http://127.0.0.1:1"}, None)
"""

from harness.gateway.app import GATEWAY_LOG_NAME, build_gateway_app

__all__ = ["GATEWAY_LOG_NAME", "build_gateway_app"]
