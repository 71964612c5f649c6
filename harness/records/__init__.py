"""The run directory's contract: the files a run writes and what each row holds, owned once.

`attempts`: records.csv, one row per HTTP attempt (the load generator and the simulator write it);
`logs`: gateway.jsonl and backend.jsonl rows (the servers and the simulator write them);
`trace_columns`: the columns of a trace file (replayed workloads);
`run_info`: the run.json fields on how the load ran and ended (the load generator writes, the report reads).
The report reads a run with these same definitions, so a field is named and typed in one place only.
"""

from harness.records.attempts import (
    RECORD_COLUMNS,
    RECORD_FIELDS,
    RECORD_KINDS,
    Column,
    RecordWriter,
    format_cell,
    iter_records,
    parse_cell,
    read_records,
    record_cells,
    records_to_csv_text,
)
from harness.records.logs import (
    BACKEND_LOG,
    BACKEND_LOG_COLUMNS,
    GATEWAY_LOG,
    GATEWAY_LOG_COLUMNS,
    RECORDS_FILE,
    RUN_INFO_FILE,
    SCENARIO_FILE,
    SHARED_STATE_ENDED,
    SHARED_STATE_LOST,
    SHARED_STATE_RESTORED,
    backend_row,
    breaker_row,
    gateway_request_row,
    shared_state_row,
)
from harness.records.run_info import (
    ATTEMPTS_CUT,
    ENDED,
    ENDED_BY,
    LOAD_STARTED_AT,
    OFFERED_LOAD,
    OFFERED_SHARE_MIN,
    RUN_SUMMARY,
    SCENARIO_SECONDS,
    TIME_MISSING,
    EndedBy,
)
from harness.records.trace_columns import TRACE_COLUMNS

__all__ = [
    "ATTEMPTS_CUT",
    "BACKEND_LOG",
    "BACKEND_LOG_COLUMNS",
    "ENDED",
    "ENDED_BY",
    "GATEWAY_LOG",
    "GATEWAY_LOG_COLUMNS",
    "LOAD_STARTED_AT",
    "OFFERED_LOAD",
    "OFFERED_SHARE_MIN",
    "RECORDS_FILE",
    "RECORD_COLUMNS",
    "RECORD_FIELDS",
    "RECORD_KINDS",
    "RUN_INFO_FILE",
    "RUN_SUMMARY",
    "SCENARIO_FILE",
    "SCENARIO_SECONDS",
    "SHARED_STATE_ENDED",
    "SHARED_STATE_LOST",
    "SHARED_STATE_RESTORED",
    "TIME_MISSING",
    "TRACE_COLUMNS",
    "Column",
    "EndedBy",
    "RecordWriter",
    "backend_row",
    "breaker_row",
    "format_cell",
    "gateway_request_row",
    "iter_records",
    "parse_cell",
    "read_records",
    "record_cells",
    "records_to_csv_text",
    "shared_state_row",
]
