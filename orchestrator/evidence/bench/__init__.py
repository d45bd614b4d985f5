"""The benchmark: workload -> one request -> record -> pure summary -> report.

- ``workload``: prompts built to an exact token count with the server's ``/tokenize``.
- ``client``: one streaming request becomes one ``RequestRecord``; it never raises.
- ``runner``: a concurrency level (N requests, C at a time) and the ladder of levels.
- ``metrics``: ``summarize(records)`` -> ``LevelSummary``, pure.
- ``report``: the table, the JSON document, the PNG plot and ``compare``.
- ``probes``: the near-limit prompt (accepted) and the over-limit prompt (rejected).
"""
