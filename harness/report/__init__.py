"""Reports on runs: records and server logs -> figures, report.html and summary.json; comparisons of runs.

The only package that imports pandas and matplotlib. Entry points: `harness.report.html.write_report`
(what a finished Locust run and `harness report` call) and `harness.report.compare.write_comparison`
(`harness compare` and sweeps):

    >>> from harness.report.html import write_report
    >>> write_report("reports/runs/quickstart")  # doctest: +SKIP
    PosixPath('reports/runs/quickstart/report.html')
"""
