"""The Azure OpenAI wire contract, owned once: what the mock, the gateway, the client and the report agree on.

- `routes`: the AOAI routes and the operation each one is (`chat`, `completions`, `embeddings`);
- `errors`: the AOAI error body;
- `retry_after`: Retry-After in all its forms (seconds, `retry-after-ms`, an HTTP date);
- `headers`: the correlation headers (client, gateway and backend ids);
- `refusals`: the gateway's refusal kinds as typed codes on the wire, never read from English text;
- `sse`: server-sent event framing and reading `usage` from a body or a stream.

Nothing here knows a server, Locust or an HTTP library: only bytes, headers and JSON (an import-linter
contract keeps it so).
"""
