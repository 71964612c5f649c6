"""Everything Locust-side except the thin locustfile: users, shape, embedded stack, run directory, summary.

Runs under gevent: nothing here imports the asyncio servers (`harness.mock`, `harness.gateway`,
`harness.serve`); the embedded stack is a separate process started with `harness serve`.
"""
