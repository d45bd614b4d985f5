"""One self-contained HTML file a person reads: the tables and charts of a result, inline.

No script, no external file, no network: the charts are inline SVG drawn here, the styles are
in the page. It renders the documents of ``bench`` (and ``tune concurrency``, which is a bench
document with a ``tune`` section), ``tune context`` and ``gate``; the JSON stays the record,
this page is its reading copy, written next to it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.mark td{background:#fff3c4;font-weight:600}.meta{color:#555}
pre{background:#f7f7f7;padding:.6em;overflow:auto}svg{margin:.5em 1em .5em 0}
"""
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], mark: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cls = ' class="mark"' if index == mark else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def chart(
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    hline: tuple[str, float] | None = None,
    marker_x: float | None = None,
) -> str:
    """A line chart as inline SVG: one polyline a series, points labelled by x."""
    width, height, left, right, top, bottom = 480, 280, 60, 20, 30, 45
    values = [v for _, ys in series for v in ys if v is not None and not math.isnan(v)]
    if hline is not None:
        values.append(hline[1])
    if not xs or not values:
        return ""
    tx = [math.log2(x) if log_x else float(x) for x in xs]
    x0, x1 = min(tx), max(tx)
    y0, y1 = 0.0, max(values) * 1.1 or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="600">{_e(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{_e(x_label)}</text>',
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        f'text-anchor="middle">{_e(y_label)}</text>',
    ]
    for x, t in zip(xs, tx, strict=True):
        parts.append(
            f'<text x="{px(t):.1f}" y="{height - bottom + 15}" text-anchor="middle" '
            f'font-size="11">{_e(_num(x, 0))}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        y = y0 + (y1 - y0) * frac
        parts.append(
            f'<text x="{left - 5}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_e(_num(y, 0))}</text>"
        )
    if marker_x is not None:
        t = math.log2(marker_x) if log_x else marker_x
        parts.append(
            f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{height - bottom}" '
            'stroke="#e6a700" stroke-dasharray="4 3"/>'
        )
    if hline is not None:
        parts.append(
            f'<line x1="{left}" y1="{py(hline[1]):.1f}" x2="{width - right}" '
            f'y2="{py(hline[1]):.1f}" stroke="#999" stroke-dasharray="6 4"/>'
            f'<text x="{width - right}" y="{py(hline[1]) - 4:.1f}" text-anchor="end" '
            f'font-size="11">{_e(hline[0])}</text>'
        )
    for index, (name, ys) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [
            (px(t), py(y))
            for t, y in zip(tx, ys, strict=True)
            if y is not None and not math.isnan(y)
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
        parts.append(
            f'<text x="{left + 8}" y="{top + 14 + 14 * index}" font-size="12" fill="{colour}">'
            f"{_e(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ---- per kind -----------------------------------------------------------------------------
def _bench(doc: dict[str, Any]) -> tuple[str, list[str]]:
    levels = [level["summary"] for level in doc.get("levels", [])]
    tune = doc.get("tune") or {}
    knee = tune.get("knee")
    shape = doc.get("shape", {})
    title = f"{'tune concurrency' if tune else 'bench'}: {doc.get('model')}"
    body = [
        f'<p class="meta">{_e(doc.get("base_url"))}, {_e(shape.get("prompt_tokens"))} prompt / '
        f"{_e(shape.get('output_tokens'))} output tokens ({_e(shape.get('mode'))}), "
        f"{_e(doc.get('started_at'))} to {_e(doc.get('finished_at'))}</p>"
    ]
    if tune:
        verdict = f"knee: c{knee}" if knee is not None else "no knee"
        body.append(f"<h2>{_e(verdict)}</h2><p>{_e(tune.get('reason'))}</p>")
        if tune.get("suggested"):
            body.append(
                "<p>suggested: "
                + ", ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in tune["suggested"].items())
                + "</p>"
            )
    conc = [s["concurrency"] for s in levels]

    def get(s: dict[str, Any], key: str, sub: str | None = None, scale: float = 1.0) -> float:
        value = s.get(key) if sub is None else (s.get(key) or {}).get(sub)
        return math.nan if value is None else float(value) * scale

    rows = [
        (
            f"c{s['concurrency']}",
            f"{s['completed']}/{s['requests']}",
            _num(get(s, "output_tok_s")),
            _num(get(s, "decode_tok_s")),
            _num(get(s, "ttft", "mean", 1000), 0),
            _num(get(s, "ttft", "p95", 1000), 0),
            _num(get(s, "tpot", "mean", 1000)),
            _num(get(s, "e2e", "mean"), 2),
        )
        for s in levels
    ]
    mark = conc.index(knee) if knee in conc else None
    body.append(
        table(
            (
                "C",
                "OK/N",
                "OUT tok/s",
                "DECODE tok/s",
                "TTFT mean ms",
                "TTFT p95 ms",
                "TPOT ms",
                "E2E mean s",
            ),
            rows,
            mark,
        )
    )
    log_x = len(conc) > 1 and all(c > 0 for c in conc)
    body.append(
        chart(
            "wall output tok/s",
            conc,
            [
                ("wall output tok/s", [get(s, "output_tok_s") for s in levels]),
                ("aggregate decode tok/s", [get(s, "decode_tok_s") for s in levels]),
            ],
            x_label="concurrency",
            y_label="tokens/s",
            log_x=log_x,
            marker_x=knee,
        )
    )
    ttft_target = (tune.get("slo") or {}).get("ttft_p95_ms")
    body.append(
        chart(
            "TTFT",
            conc,
            [
                ("TTFT p95 ms", [get(s, "ttft", "p95", 1000) for s in levels]),
                ("TTFT mean ms", [get(s, "ttft", "mean", 1000) for s in levels]),
            ],
            x_label="concurrency",
            y_label="ms",
            log_x=log_x,
            hline=("target", float(ttft_target)) if ttft_target else None,
            marker_x=knee,
        )
    )
    for probe in doc.get("probes", []):
        body.append(f"<p>probe {_e(probe['name'])}: {'pass' if probe['passed'] else 'FAIL'}</p>")
    return title, body


def _context(doc: dict[str, Any]) -> tuple[str, list[str]]:
    rows = doc.get("rows", [])
    n = doc.get("sequences")
    winner = (doc.get("winner") or {}).get("max_model_len")
    title = f"tune context: {doc.get('source', {}).get('name')} for {n} sequences"
    body = [
        f'<p class="meta">{_e(doc.get("started_at"))} to {_e(doc.get("finished_at"))}; '
        f"{_e(doc.get('why_stopped'))}; {_e(doc.get('restored'))}</p>",
        f"<h2>selected: {_e(winner) if winner else 'nothing fits'}</h2>",
    ]
    table_rows = [
        (
            r["max_model_len"],
            _num(r.get("kv_cache_tokens")),
            "-" if r.get("max_concurrency") is None else f"{r['max_concurrency']:.2f}x",
            r["outcome"] + (f": {r['reason']}" if r.get("reason") else ""),
            _num(r.get("start_s")),
        )
        for r in rows
    ]
    mark = next((i for i, r in enumerate(rows) if r["max_model_len"] == winner), None)
    body.append(
        table(("max_model_len", "KV tokens", "concurrency", "outcome", "start s"), table_rows, mark)
    )
    measured = sorted(
        (r for r in rows if r.get("max_concurrency")), key=lambda r: r["max_model_len"]
    )
    if measured:
        body.append(
            chart(
                "vLLM's reported concurrency",
                [r["max_model_len"] for r in measured],
                [("max concurrency (x)", [r["max_concurrency"] for r in measured])],
                x_label="max_model_len",
                y_label="x",
                hline=(f"target {n}x", float(n)) if n else None,
                marker_x=winner,
            )
        )
    return title, body


def _gate(doc: dict[str, Any]) -> tuple[str, list[str]]:
    profile = doc.get("profile", {})
    title = f"gate: {profile.get('name')}"
    body = [
        f'<p class="meta">hash {_e(str(profile.get("hash"))[:12])}, status '
        f"{_e(profile.get('status'))}, {_e(doc.get('base_url'))}, {_e(doc.get('started_at'))}</p>",
        f"<h2>{'PASSED' if doc.get('passed') else 'FAILED'}</h2>",
        table(
            ("#", "step", "result", "why", "numbers"),
            [
                (
                    s["number"],
                    s["name"],
                    s["result"],
                    s["reason"],
                    json.dumps(s.get("numbers"))[:200],
                )
                for s in doc.get("steps", [])
            ],
        ),
    ]
    if doc.get("promoted"):
        body.append(f"<p>promoted: {_e(doc['promoted'])}</p>")
    return title, body


def render(doc: dict[str, Any]) -> str:
    kind = doc.get("kind")
    if kind == "model-slot-bench":
        title, body = _bench(doc)
    elif kind == "model-slot-tune-context":
        title, body = _context(doc)
    elif kind == "model-slot-gate":
        title, body = _gate(doc)
    else:
        raise ValueError(f"no HTML report for a document of kind {kind!r}")
    fingerprint = doc.get("fingerprint")
    if fingerprint:
        body.append("<h2>fingerprint</h2><pre>" + _e(json.dumps(fingerprint, indent=2)) + "</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(body)}</body></html>\n"
    )


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(doc), encoding="utf-8")
    return path
