"""The `workload` section: apps, request mixes, and the arrival shape the Locust users replay.

>>> w = Workload.model_validate({"apps": [{"id": "a"}], "stages": [{"duration": 60, "users": 5}]})
>>> w.apps[0].client_profile, w.stages[0].spawn_rate
('openai-python', 5.0)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, StringConstraints, model_validator

from harness.scenario.common import Distribution, Duration, FieldError, Section, index_unique

AppId = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]
ClientProfileName = Literal["none", "openai-python-legacy", "openai-python", "custom", "azure-openai-benchmark"]
Operation = Literal["chat", "completions", "embeddings"]
# The largest prompt a request may carry: beyond the longest context window of any model (about 1M tokens).
MAX_PROMPT_TOKENS = 2_000_000


class RetrySettings(Section):
    """Retry rules of the `custom` client profile (the SDK's own numbers by default)."""

    max_retries: int = Field(2, ge=0, le=100, description="retries after the first attempt")
    backoff_base: NonNegativeFloat = Field(0.5, description="first backoff wait (s); doubles with each retry")
    backoff_max: NonNegativeFloat = Field(8.0, description="longest backoff wait (s)")
    jitter: float = Field(0.25, ge=0, le=1, description="largest share the backoff is reduced by at random")
    honour_cap: NonNegativeFloat = Field(
        120.0, description="a server Retry-After up to this many seconds is waited out as asked"
    )
    give_up_above_cap: bool = Field(
        True, description="stop retrying when the server asks for more than honour_cap (else: own backoff)"
    )


class App(Section):
    """One calling application: its share of the users, its client and its credentials."""

    id: AppId = Field("app", description="name of the app in records and reports")
    weight: PositiveFloat = Field(1.0, description="relative share of the users that belong to this app")
    client_profile: ClientProfileName = Field("openai-python", description="retry behaviour of this app's client")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="rules of the `custom` profile")
    api_key: str | None = Field(None, description="sent as the `api-key` header (else --api-key / the environment)")
    subscription_key: str | None = Field(None, description="sent as `Ocp-Apim-Subscription-Key`")
    appid: str | None = Field(
        None, description="`appid` claim of the unsigned Bearer token the gateway reads (the id when unset)"
    )
    send_token: bool = Field(True, description="send the unsigned Bearer token carrying the appid claim")
    mixes: list[str] = Field(
        default_factory=list, description="names of the mixes this app sends (every mix when empty)"
    )

    @property
    def claim(self) -> str:
        return self.appid or self.id


class Mix(Section):
    """One kind of request: operation, sizes, streaming share and deployment."""

    name: str = Field("", description="name used by apps and in stats (e.g. `chat`); the operation when empty")
    operation: Operation = Field("chat", description="chat, completions or embeddings")
    deployment: str = Field("gpt-4o", description="deployment (model) to call; must exist in the backends")
    weight: PositiveFloat = Field(1.0, description="relative share of requests")
    prompt_tokens: Distribution = Field(
        default_factory=lambda: Distribution(kind="constant", value=200),
        description="prompt size in tokens (the prompt is built to this exact tiktoken count)",
    )
    max_tokens: Distribution | None = Field(
        default_factory=lambda: Distribution(kind="constant", value=100),
        description="max_tokens sent; null sends none (the deployment's default is charged)",
    )
    stream_share: float = Field(0.0, ge=0, le=1, description="share of requests sent with stream: true")
    include_usage: bool = Field(True, description="streams ask for the usage chunk (stream_options.include_usage)")

    @model_validator(mode="after")
    def _check_prompt_size(self) -> Mix:
        # A prompt is built to its exact size before it is sent: an absurd size would take all memory first.
        largest = self.prompt_tokens.upper_bound()
        if (largest if largest is not None else self.prompt_tokens.expected()) > MAX_PROMPT_TOKENS:
            raise FieldError("prompt_tokens", f"must stay at most {MAX_PROMPT_TOKENS:,} tokens (set max)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.operation


class Stage(Section):
    """A stretch of the run: how many users, how fast they arrive, and optionally a target request rate."""

    duration: Duration = Field(60.0, description="length of the stage in scenario time")
    users: int = Field(10, ge=0, le=100_000, description="users alive during the stage")
    spawn_rate: PositiveFloat | None = Field(
        None,
        description="users started per scenario second when the stage adds users (users when unset: all at once). "
        "Users start in batches, as Locust's dispatcher starts them: max(1, floor(rate)) users in the same "
        "instant, one batch every batch/rate s; live and simulated runs start them so at any time scale",
    )
    rate: PositiveFloat | None = Field(
        None, description="target requests per scenario second across all users (closed loop when unset)"
    )

    @model_validator(mode="after")
    def _default_spawn_rate(self) -> Stage:
        if self.spawn_rate is None:
            self.spawn_rate = float(max(1, self.users))
        return self


class Trace(Section):
    """A recorded workload replayed in time order instead of the mixes' random draws."""

    file: str = Field(
        ..., description="CSV or JSON lines (offset_s, app, operation, prompt_tokens, max_tokens, stream)"
    )
    deployment: str = Field("gpt-4o", description="deployment rows without a `deployment` column go to")
    users: int = Field(10, ge=1, le=10_000, description="users that send the trace's requests")


class Workload(Section):
    """What the load generator sends, and when."""

    apps: list[App] = Field(default_factory=lambda: [App()], min_length=1, description="the calling apps")
    mixes: list[Mix] = Field(default_factory=lambda: [Mix()], min_length=1, description="the kinds of request")
    users: int = Field(10, ge=1, le=100_000, description="users when there are no stages and no -u")
    spawn_rate: PositiveFloat = Field(
        10.0,
        description="users started per scenario second without stages, in batches of max(1, floor(rate)) users "
        "in the same instant (as a stage's spawn_rate)",
    )
    think_time: Distribution = Field(
        default_factory=lambda: Distribution(kind="constant", value=0.0),
        description="pause between one user's requests (scenario s) when no target rate is set",
    )
    stages: list[Stage] = Field(default_factory=list, description="the arrival shape; empty: constant users")
    repeat_stages: bool = Field(
        False, description="start the stages over when they end, until run.duration (else the run ends with them)"
    )
    trace: Trace | None = Field(None, description="replay this trace instead of the mixes")
    api_version: str = Field("2024-10-21", description="api-version query parameter of AOAI routes")
    route: Literal["deployments", "v1"] = Field(
        "deployments", description="`/openai/deployments/{name}/...` or the v1 route with the model in the body"
    )
    timeout: Duration = Field(600.0, description="client timeout per attempt (scenario time, as the SDK's)")

    @model_validator(mode="after")
    def _check_references(self) -> Workload:
        index_unique((app.id for app in self.apps), "apps", "id")
        labels = index_unique((mix.label for mix in self.mixes), "mixes", "name")
        for i, app in enumerate(self.apps):
            for j, name in enumerate(app.mixes):
                if name not in labels:
                    known = ", ".join(sorted(labels))
                    raise FieldError(f"apps[{i}].mixes[{j}]", f"unknown mix '{name}' (the mixes are: {known})")
        return self

    def mix(self, label: str) -> Mix:
        for mix in self.mixes:
            if mix.label == label:
                return mix
        raise KeyError(label)

    def app(self, app_id: str) -> App:
        for app in self.apps:
            if app.id == app_id:
                return app
        raise KeyError(app_id)

    def deployment_references(self) -> list[tuple[str, str]]:
        """(path, deployment) for every place that names a deployment, to check against the backends."""
        refs = [(f"mixes[{i}].deployment", mix.deployment) for i, mix in enumerate(self.mixes)]
        if self.trace is not None:
            refs.append(("trace.deployment", self.trace.deployment))
        return refs

    def check_deployments(self, known: set[str]) -> None:
        """Raise a FieldError (path from the scenario root) for a mix or trace naming an unknown deployment."""
        for path, name in self.deployment_references():
            if name not in known:
                have = ", ".join(sorted(known))
                raise FieldError(f"workload.{path}", f"unknown deployment '{name}' (the backends have: {have})")
