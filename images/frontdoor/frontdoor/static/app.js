// The operator page: polls /ui/api/state and redraws. Read-only; no inline script, no
// innerHTML with data (every value goes in as text), no library, no request elsewhere.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const PHASE_COLOURS = {
  lock: "#9aa5b1", resolve: "#b9c2cc", preflight: "#7f8c9a", switching: "#d98a00",
  drain: "#e8b33c", stop: "#d0342c", create: "#7b4fd6", ready: "#2f6fdf", facts: "#5fa8d3",
  flip: "#1f9d55", persist: "#52c47f", "rollback-stop": "#8c1d18", down: "#555",
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function text(id, value, blank = "–") {
  const node = $(id);
  const s = value === null || value === undefined || value === "" ? blank : String(value);
  if (node.textContent !== s) node.textContent = s;
}

function kind(status) {
  return (status || "").split("-")[0];
}

function secs(v) {
  if (v === null || v === undefined) return "–";
  return v >= 100 ? `${Math.round(v)} s` : `${Number(v).toFixed(1)} s`;
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function phaseColour(name) {
  return PHASE_COLOURS[name] || "#a0a0a0";
}

function renderRoute(s) {
  const r = s.route;
  const state = $("route-state");
  state.dataset.state = r.state;
  text("route-state", r.paused ? `${r.state} (paused)` : r.state);
  text("route-for", r.for_s === null ? "" : `for ${secs(r.for_s)}`, "");
  text("route-reason", r.reason, "");
  const phase = $("route-phase");
  phase.hidden = !r.phase;
  text("route-phase", r.phase ? `phase ${r.phase.name}, ${secs(r.phase.for_s)}` : "", "");
}

function renderProfile(s) {
  const p = s.profile;
  text("profile-name", p.name);
  text("profile-title", p.title);
  text("profile-hf", p.hf_id);
  text("profile-modalities", p.modalities);
  const badge = $("profile-status");
  badge.dataset.kind = kind(p.status);
  text("profile-status", p.status);
}

function renderGenerations(s) {
  const g = s.generations;
  text("gen-active", g.active);
  text("gen-queued", g.queued);
  text("gen-cap", g.cap);
  text("gen-finished", g.finished);
  const refusals = Object.entries(g.refusals);
  text("gen-refusals", refusals.length ? refusals.map(([k, n]) => `${k} ${n}`).join(", ") : "none");
  $("gen-bar").style.width = `${Math.min(100, (100 * g.active) / Math.max(1, g.cap))}%`;
  sparkline($("ttft"), g.ttft_recent_s);
  const last = g.ttft_recent_s[g.ttft_recent_s.length - 1];
  text("ttft-label", last === undefined ? "no generation yet"
    : `last ${(last * 1000).toFixed(0)} ms, max ${(Math.max(...g.ttft_recent_s) * 1000).toFixed(0)} ms over ${g.ttft_recent_s.length}`);
}

function sparkline(node, values) {
  node.replaceChildren();
  if (!values.length) return;
  const max = Math.max(...values) || 1;
  const w = 300 / Math.max(values.length, 1);
  values.forEach((v, i) => {
    const h = Math.max(1, (46 * v) / max);
    node.append(svg("rect", { x: i * w + 0.5, y: 47 - h, width: Math.max(1, w - 1), height: h, fill: "#2f6fdf" }));
  });
}

// The orchestrator publishes at least every 10 s; a report this old means it stopped.
const WATCHDOG_STALE_S = 60;

function rate(v) {
  return v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} tok/s`;
}

function latency(v) {
  return v < 1 ? `${Math.round(v * 1000)} ms` : secs(v);
}

function probeText(w) {
  const p = w.last_probe;
  const now = w.probing ? `probing now (${w.probing})` : "";
  if (!p) return now || "none yet";
  const outcome = p.ok ? "answered" : p.timed_out ? "timed out" : "failed";
  const parts = [`${p.kind} ${outcome} in ${latency(p.latency_s)}, at ${when(p.at)} (${secs(p.age_s)} ago)`];
  if (p.error) parts.push(p.error);
  if (now) parts.push(now);
  return parts.join("; ");
}

function silentText(live) {
  const last = live.last_token_age_s === null ? "no token relayed yet" : `last token relayed ${secs(live.last_token_age_s)} ago`;
  const active = live.active_generations;
  const oldest = active && live.oldest_active_silent_s !== null ? `, the oldest silent for ${secs(live.oldest_active_silent_s)}` : "";
  return `${last}; ${active} active${oldest}`;
}

function decodeText(w) {
  if (w.decode_tok_s === null || w.decode_tok_s === undefined) {
    return w.baseline_tok_s ? `no decode probe yet; baseline ${rate(w.baseline_tok_s)} (${w.baseline_source || "?"})` : "no decode probe yet";
  }
  if (!w.baseline_tok_s) return `${rate(w.decode_tok_s)} now; no baseline yet`;
  return `${rate(w.decode_tok_s)} now vs ${rate(w.baseline_tok_s)} baseline (${w.baseline_source || "?"}); degraded below ${rate(w.degraded_below_tok_s)}`;
}

function decodeBar(w) {
  const bar = $("wd-decode-bar");
  const mark = $("wd-decode-mark");
  const base = w && w.baseline_tok_s;
  const now = w && w.decode_tok_s;
  bar.parentElement.hidden = !base; // nothing to measure against yet
  bar.style.width = base && now !== null && now !== undefined ? `${Math.min(100, (100 * now) / base)}%` : "0";
  if (w && now !== null && now !== undefined && w.degraded_below_tok_s !== null && now < w.degraded_below_tok_s) bar.dataset.slow = "1";
  else delete bar.dataset.slow;
  const threshold = w && w.degraded_below_tok_s;
  mark.style.display = base && threshold ? "block" : "none";
  if (base && threshold) mark.style.left = `${Math.min(100, (100 * threshold) / base)}%`;
}

function restartsText(w) {
  const span = w.restart_window_s === 3600 ? "hour" : secs(w.restart_window_s);
  return `${w.restarts_in_window} of ${w.restart_budget} in the last ${span}`;
}

function renderDevices(w) {
  const d = w && w.devices;
  const gpus = d && d.available ? d.gpus : [];
  const cell = (v, unit) => el("td", {}, v === null || v === undefined ? "–" : `${v}${unit}`);
  const rows = gpus.map((g) => el("tr", {}, el("td", {}, g.gpu), cell(g.utilization_percent, " %"),
    cell(g.memory_used_mib, " MiB"), cell(g.power_w, " W"), cell(g.temperature_c, " °C"), cell(g.engine_resets, "")));
  $("wd-gpus").tBodies[0].replaceChildren(...rows);
  $("wd-gpus").hidden = !rows.length;
  let note = "";
  if (!w) note = "";
  else if (!d) note = "no device report";
  else if (!rows.length) {
    const why = (d.reason || "").replace(/^no device telemetry:\s*/, "");
    note = why ? `no device telemetry available (${why})` : "no device telemetry available";
  } else note = `from ${d.source || "?"}`;
  text("wd-devices", note, "");
}

function renderWatchdog(s) {
  const w = s.watchdog;
  const verdict = w && w.verdict ? w.verdict : "none";
  const label = !w ? "no report" : w.verdict || "no verdict";
  for (const id of ["wd-chip", "wd-verdict"]) {
    $(id).dataset.verdict = verdict;
    text(id, label);
  }
  renderDevices(w);
  decodeBar(w);
  const view = w && w.verdict ? w : null;
  text("wd-reason", !w ? "the orchestrator's watchdog has not reported to this frontdoor yet" : view ? view.reason : "", "");
  text("wd-probe", view ? probeText(view) : null);
  text("wd-proof", view && view.last_proof ? `${view.last_proof}, ${secs(view.last_proof_age_s)} ago` : null);
  text("wd-silent", silentText(s.liveness));
  text("wd-decode", view ? decodeText(view) : null);
  text("wd-restarts", view ? restartsText(view) : null);
  const reported = $("wd-reported");
  const stale = Boolean(w) && w.reported_age_s > WATCHDOG_STALE_S;
  reported.classList.toggle("stale", stale);
  text("wd-reported", w ? `reported ${when(w.reported_at)}, ${secs(w.reported_age_s)} ago${stale ? " (stale: is the orchestrator running?)" : ""}` : "", "");
}

const FACT_LABELS = {
  kv_cache_tokens: ["KV cache", (v) => `${v.toLocaleString()} tokens`],
  max_concurrency: ["max concurrency", (v, f) => `${v}x at ${f.max_concurrency_context_tokens ?? "?"} tokens`],
  cold_start_s: ["cold start", secs],
  ready_s: ["create to ready", secs],
  model_load_s: ["model load", secs],
  torch_compile_s: ["torch.compile", secs],
  graph_capture_s: ["graph capture", secs],
  engine_init_s: ["engine init", secs],
};

function renderFacts(s) {
  const dl = $("facts");
  const rows = [];
  for (const [key, [label, fmt]] of Object.entries(FACT_LABELS)) {
    if (key in s.startup_facts) rows.push(el("dt", {}, label), el("dd", {}, fmt(s.startup_facts[key], s.startup_facts)));
  }
  if (!rows.length) rows.push(el("dt", {}, "none yet"), el("dd", {}, ""));
  dl.replaceChildren(...rows);
}

function renderSwitches(s) {
  const switches = s.board.switches.slice().reverse();
  const longest = Math.max(1, ...switches.map((x) => x.total_s));
  const seen = new Set();
  const rows = switches.map((x) => {
    const bar = el("div", { class: "bar", title: x.phases.map((p) => `${p.name} ${p.duration_s}s`).join(", ") });
    bar.style.width = `${Math.max(2, (100 * x.total_s) / longest)}%`;
    const sum = x.phases.reduce((a, p) => a + p.duration_s, 0) || 1;
    for (const p of x.phases) {
      seen.add(p.name);
      const part = el("span", { title: `${p.name} ${p.duration_s} s` });
      part.style.width = `${(100 * p.duration_s) / sum}%`;
      part.style.background = phaseColour(p.name);
      bar.append(part);
    }
    const good = ["switched", "started", "adopted", "unchanged", "stopped"].includes(x.outcome);
    return el("tr", {}, el("td", {}, when(x.started_at)), el("td", {}, x.action),
      el("td", {}, x.profile || "–"), el("td", { class: good ? "ok" : "bad" }, x.outcome),
      el("td", {}, secs(x.total_s)), el("td", {}, bar));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "nothing published yet")));
  $("switches").tBodies[0].replaceChildren(...rows);
  $("legend").replaceChildren(...[...seen].map((n) => {
    const swatch = el("i");
    swatch.style.background = phaseColour(n);
    return el("span", {}, swatch, n);
  }));
}

function benchChart(bench) {
  const node = svg("svg", { class: "mini", viewBox: "0 0 160 40", role: "img" });
  const pts = bench.points;
  const maxTok = Math.max(1, ...pts.map((p) => p.output_tok_s || 0));
  const maxTtft = Math.max(1e-6, ...pts.map((p) => p.ttft_p50_s || 0));
  const w = 160 / Math.max(1, pts.length);
  const line = [];
  pts.forEach((p, i) => {
    const h = (36 * (p.output_tok_s || 0)) / maxTok;
    const bar = svg("rect", { x: i * w + 2, y: 38 - h, width: w - 4, height: h, fill: "#5fa8d3" });
    const tip = svg("title");
    tip.textContent = `c${p.concurrency}: ${(p.output_tok_s || 0).toFixed(1)} tok/s, TTFT p50 ${((p.ttft_p50_s || 0) * 1000).toFixed(0)} ms`;
    bar.append(tip);
    node.append(bar);
    line.push(`${i * w + w / 2},${38 - (36 * (p.ttft_p50_s || 0)) / maxTtft}`);
  });
  node.append(svg("polyline", { points: line.join(" "), fill: "none", stroke: "#d98a00", "stroke-width": 2 }));
  return node;
}

function soakChart(soak) {
  const node = svg("svg", { class: "mini", viewBox: "0 0 160 40", role: "img" });
  const n = Math.max(1, soak.cycles.length);
  node.append(svg("line", { x1: 0, y1: 20, x2: 160, y2: 20, stroke: "#e3e6ea", "stroke-width": 2 }));
  soak.cycles.forEach((c, i) => {
    const bad = c.status !== "clean";
    const dot = svg("circle", { cx: 4 + (152 * i) / Math.max(1, n - 1), cy: 20, r: bad ? 5 : 3, fill: bad ? "#d0342c" : "#1f9d55" });
    const tip = svg("title");
    tip.textContent = `cycle ${c.cycle} ${c.time}: ${c.status}`;
    dot.append(tip);
    node.append(dot);
  });
  return node;
}

function renderProfiles(s) {
  const evidence = s.board.evidence;
  const rows = s.board.profiles.map((p) => {
    const e = evidence[p.name] || {};
    const gate = e.gate
      ? el("span", { class: e.gate.passed ? "ok" : "bad" }, `${e.gate.passed ? "passed" : "failed"} ${when(e.gate.finished_at)}`)
      : "–";
    const bench = e.bench && e.bench.points.length ? benchChart(e.bench) : "–";
    const soak = e.soak ? el("div", {}, soakChart(e.soak), el("div", { class: "small muted" }, `${e.soak.cycles.length} cycles, ${e.soak.anomalies} anomalies`)) : "–";
    const badge = el("span", { class: "badge", "data-kind": kind(p.status) }, p.status);
    const name = el("td", {}, p.name);
    if (p.name === s.profile.name) name.append(el("span", { class: "chip" }, " active"));
    return el("tr", {}, name, el("td", {}, badge), el("td", {}, p.modalities),
      el("td", { class: "small" }, p.purpose || p.title), el("td", {}, gate), el("td", {}, bench), el("td", {}, soak));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "the orchestrator has not published its profiles yet")));
  $("profiles").tBodies[0].replaceChildren(...rows);
}

function render(s) {
  renderRoute(s);
  renderProfile(s);
  renderGenerations(s);
  renderFacts(s);
  renderWatchdog(s);
  renderSwitches(s);
  renderProfiles(s);
  text("footer", `frontdoor ${s.frontdoor.version}, up ${secs(s.frontdoor.uptime_s)}; board published ${when(s.board.published_at)}; updated ${when(s.now)}`);
}

async function poll() {
  try {
    const response = await fetch("/ui/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (err) {
    const state = $("route-state");
    state.dataset.state = "unreachable";
    text("route-state", "unreachable");
    text("route-reason", `the frontdoor did not answer: ${err.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", poll);
