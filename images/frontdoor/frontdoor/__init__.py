"""The model slot's frontdoor: one OpenAI-compatible endpoint in front of one model container.

Read in this order: ``settings`` (environment), ``route`` (what the orchestrator tells us),
``admission`` (who may generate now), ``proxy`` (the relay), ``app`` (assembly), ``admin``.
"""

__version__ = "0.1.0"
