"""The `gateway` section: the reference gateway's pool, breaker, token limits and metrics (APIM's terms)."""

from __future__ import annotations

from pydantic import Field

from harness.scenario.common import Section


class GatewayConfig(Section):
    """The reference gateway. Field names follow Azure API Management's policies where APIM has them."""

    port: int | None = Field(None, ge=0, le=65535, description="fixed port; a free one when unset")
