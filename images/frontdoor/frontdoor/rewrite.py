"""The lab's opt-in request-body rewrites for generation paths.

Each is per profile (``Limits``) and off by default: rewriting ``model`` to the served name, an
output-token default and cap, and default ``chat_template_kwargs`` where the client's values win.
When none applies to a path, the body is relayed byte for byte (image requests included).

Only the JSON generation routes below are rewritten; other generations (audio uploads, pooling,
scoring) pass untouched. ``/invocations`` (SageMaker) is vLLM's alias for chat or completions,
chosen by the body: it gets the rewrite of the route it stands for, so it cannot bypass a cap.
Whatever the bytes, a body that cannot be parsed or written back gets a 400, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import bad_request
from .route import Limits

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
INVOCATIONS = "/invocations"

# Which body fields carry the output-token budget, per endpoint.
TOKEN_FIELDS: dict[str, tuple[str, ...]] = {
    CHAT: ("max_completion_tokens", "max_tokens"),
    COMPLETIONS: ("max_tokens",),
    "/v1/messages": ("max_tokens",),
    "/v1/responses": ("max_output_tokens",),
}


# The JSON generation routes whose ``model`` may be rewritten.
MODEL_PATHS = frozenset(
    {*TOKEN_FIELDS, INVOCATIONS, "/inference/v1/generate", "/generative_scoring"}
)


def requested_model(body: bytes) -> str | None:
    """The ``model`` a generation body names, or None when it names none or is not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or not UTF-8; vLLM said what was wrong
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def needed(path: str, limits: Limits) -> bool:
    """Whether a generation on ``path`` must be parsed at all under these limits."""
    if path not in MODEL_PATHS:
        return False
    if limits.rewrite_request_model and limits.served_model_name:
        return True
    tokens = bool(limits.default_max_output_tokens or limits.max_output_tokens)
    if tokens and (path in TOKEN_FIELDS or path == INVOCATIONS):
        return True
    return path in (CHAT, INVOCATIONS) and bool(limits.chat_template_kwargs)


def apply(path: str, body: bytes, limits: Limits) -> bytes:
    """The rewritten body. Raises a 400 ``Refusal`` when the body is not a JSON object, or holds
    what cannot be relayed faithfully (a lone surrogate, an integer past Python's digit limit,
    nesting past the recursion limit)."""
    try:
        data = json.loads(body, parse_constant=_non_finite)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer with more digits than int() accepts
        raise bad_request(f"request body has a number too long to handle: {exc}") from None
    except _NonFinite as exc:
        raise bad_request(f"request body has {exc}, which is not JSON") from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    if path == INVOCATIONS:  # vLLM routes it to chat when it has messages, else completions
        path = CHAT if "messages" in data else COMPLETIONS
    rewrite_fields(path, data, limits)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()
    except UnicodeEncodeError:
        raise bad_request("request body holds a lone UTF-16 surrogate (e.g. \\ud800)") from None
    except ValueError:  # allow_nan=False: a float that overflowed (1e999) would become Infinity
        raise bad_request("request body has a number out of range (e.g. 1e999)") from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None


class _NonFinite(Exception):
    """``NaN``/``Infinity`` in a body: Python's parser accepts them, JSON does not."""


def _non_finite(constant: str) -> None:
    raise _NonFinite(constant)


def rewrite_fields(path: str, data: dict[str, Any], limits: Limits) -> None:
    if limits.rewrite_request_model and limits.served_model_name:
        data["model"] = limits.served_model_name
    fields = TOKEN_FIELDS.get(path, ())
    if fields and (limits.default_max_output_tokens or limits.max_output_tokens):
        _apply_token_budget(
            data, fields, limits.default_max_output_tokens, limits.max_output_tokens
        )
    if path == CHAT and limits.chat_template_kwargs:
        client = data.get("chat_template_kwargs")
        if client is None:
            data["chat_template_kwargs"] = dict(limits.chat_template_kwargs)
        elif isinstance(client, dict):
            data["chat_template_kwargs"] = {**limits.chat_template_kwargs, **client}
        # anything else is the client's own malformed value: vLLM will say what is wrong


def _valid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _apply_token_budget(
    data: dict[str, Any], fields: tuple[str, ...], default: int | None, cap: int | None
) -> None:
    # Missing or invalid -> the default (or the cap when there is no default); larger -> cap.
    fallback = default if default is not None else cap
    if fallback is not None and cap is not None:
        fallback = min(fallback, cap)
    present = [f for f in fields if f in data and data[f] is not None]
    if not present:
        if fallback is not None:
            data[fields[-1]] = fallback
        return
    for name in present:
        value = data[name]
        if not _valid(value):
            if fallback is None:
                del data[name]
            else:
                data[name] = fallback
        elif cap is not None and value > cap:
            data[name] = cap
