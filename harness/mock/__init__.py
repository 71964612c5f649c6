"""The mock Azure OpenAI backend pool: one ASGI app per AOAI resource of the scenario.

The ASGI app is `harness.mock.app.build_mock_app`, the pool `harness.mock.pool`, the log `harness.mock.log`.
This package file imports nothing, so the simulator can drive the resource's rules (`harness.mock.core`)
without loading a web server.
"""
