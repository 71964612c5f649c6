"""A trace file's columns (`workload.trace.file`): one replayed request per row, in time order.

`harness.workload.trace` reads them (CSV or JSON lines); `harness trace import` writes them from APIM's logs.
"""

from __future__ import annotations

TRACE_COLUMNS = (
    "offset_s",  # scenario seconds from the start of the load
    "app",  # one of the workload's apps (empty: the first)
    "operation",  # chat, completions or embeddings
    "prompt_tokens",
    "max_tokens",  # empty: not sent
    "stream",  # true or false
    "deployment",  # empty: workload.trace.deployment
)
