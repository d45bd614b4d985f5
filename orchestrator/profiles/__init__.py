"""Profiles: parse, validate, resolve inheritance (``store``), the key schema (``schema``)."""
