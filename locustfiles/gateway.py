"""Replay a scenario against the embedded stack (mock AOAI pool + gateway) or a real endpoint.

    locust -f locustfiles/gateway.py                                  # web UI, scenarios/quickstart.yaml
    locust -f locustfiles/gateway.py --headless -t 60s --scenario scenarios/ptu-spillover.yaml
    locust -f locustfiles/gateway.py --host https://my-apim.azure-api.net --api-key ...   # starts nothing

Everything lives in `harness.loadgen`; this file only hands Locust the user and the shape.
"""

from harness.loadgen.plugin import GatewayUser, ScenarioShape, install

__all__ = ["GatewayUser", "ScenarioShape"]

install()
