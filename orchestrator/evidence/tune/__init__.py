"""The lab's experiments, automated (``python -m orchestrator tune``).

- ``knee``: the concurrency knee of a ladder, pure (growth per doubling, SLO, goodput).
- ``context``: the ``max_model_len`` search over real starts, the search itself pure.
- ``derived``: writing a derived profile file (``MODEL_SLOT_EXTENDS``) with how it was found.
"""
