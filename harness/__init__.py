"""Load-testing and rate-limit characterisation harness for Azure OpenAI behind a gateway."""

__version__ = "0.1.0"
