"""The reference gateway: Azure API Management's GenAI-gateway policies in front of a backend pool.

The ASGI app is `harness.gateway.app.build_gateway_app`. This package file imports nothing, so the
simulator can drive the gateway's rules (`forwarding`, `breaker`, `token_limit`, ...) without loading a
web server.
"""
