// The mcpvisor dashboard: one SSE stream (/api/dashboard/events) keeps the
// page live; tool runs and drills stream their own events. Data is put in
// the page as text, never as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "mcpvisor-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let lastState = null;

function headers(extra) {
  const h = Object.assign({}, extra);
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function askToken(why) {
  const form = $("#auth");
  form.hidden = false;
  setConn("down", why || "token needed");
}

function setConn(state, text) {
  const conn = $("#conn");
  conn.dataset.conn = state;
  conn.textContent = text || state;
}

// Reads an SSE response, calling onEvent(name, data) per event.
async function sse(url, init, onEvent) {
  const options = Object.assign({}, init || {});
  options.headers = headers(Object.assign({ Accept: "text/event-stream" }, options.headers || {}));
  const res = await fetch(url, options);
  if (res.status === 401) {
    askToken("token needed");
    throw new Error("401: a token is needed");
  }
  if (!res.ok || !res.body) {
    throw new Error(res.status + " " + (await res.text()));
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const raw = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of raw.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

function classOf(value) {
  if (["ready", "healthy", "closed"].includes(value)) return "good";
  if (["degraded", "starting", "restarting", "half_open", "unknown", "disabled", "stopped"].includes(value)) return "meh";
  return "bad";
}

function spark(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  if (!points || points.length === 0) return svg;
  const values = points.filter((p) => p !== null);
  const max = Math.max(1, ...values);
  const step = points.length > 1 ? 120 / (points.length - 1) : 0;
  const line = document.createElementNS(ns, "polyline");
  const coords = [];
  points.forEach((p, i) => {
    const x = (i * step).toFixed(1);
    if (p === null) {
      const mark = document.createElementNS(ns, "line");
      mark.setAttribute("x1", x); mark.setAttribute("x2", x);
      mark.setAttribute("y1", "0"); mark.setAttribute("y2", "24");
      svg.append(mark);
    } else {
      coords.push(x + "," + (23 - (p / max) * 22).toFixed(1));
    }
  });
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  return svg;
}

function duration(secs) {
  if (secs === null || secs === undefined) return "–";
  if (secs < 60) return secs + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m";
  return Math.floor(secs / 3600) + "h" + Math.floor((secs % 3600) / 60) + "m";
}

function ms(v) {
  return v === null || v === undefined ? "–" : (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
}

function renderServices(state) {
  const health = Object.fromEntries((state.health || []).map((h) => [h.service, h]));
  const rows = state.services.map((s) => {
    const h = health[s.name] || {};
    return el("tr", { "data-service": s.name },
      el("td", { class: "name" }, s.name),
      el("td", {}, s.group),
      el("td", { class: "state " + classOf(s.state) }, s.state),
      el("td", { class: "health " + classOf(s.health) }, s.health),
      el("td", { class: "breaker " + classOf(s.breaker) }, s.breaker),
      el("td", { class: "restarts" }, s.restarts),
      el("td", { class: "in-flight" }, s.inFlight),
      el("td", {}, spark((state.sparklines || {})[s.name])),
      el("td", {}, ms(h.p50Ms)),
      el("td", {}, h.uptimePct === null || h.uptimePct === undefined ? "–" : h.uptimePct.toFixed(1) + " %"),
      el("td", {}, duration(s.uptimeSecs)));
  });
  $("#services tbody").replaceChildren(...rows);
  const ready = state.services.filter((s) => s.state === "ready").length;
  $("#summary").textContent = ready + "/" + state.services.length + " services ready · " +
    state.alerts.active.length + " active alerts";
}

function alertItem(a) {
  const when = new Date(a.raisedAtMs).toLocaleTimeString();
  return el("li", { "data-key": a.key },
    el("span", { class: "sev sev-" + a.severity }, a.severity), " ",
    when, " ", a.message,
    a.active ? "" : " (closed after " + Math.round(a.durationMs / 1000) + " s)");
}

function renderAlerts(state) {
  const active = state.alerts.active;
  $("#alerts-active").replaceChildren(...(active.length ? active.map(alertItem) : [el("li", {}, "No active alerts.")]));
  $("#alerts-recent").replaceChildren(...state.alerts.recent.map(alertItem));
}

function renderDrills(state) {
  const box = $("#drills");
  if (!state.adminApi) {
    box.replaceChildren(el("p", {}, "Drills need the admin API (server.admin_token)."));
    return;
  }
  if (box.dataset.kinds !== state.drills.kinds.join(",")) {
    box.dataset.kinds = state.drills.kinds.join(",");
    box.replaceChildren(...state.drills.kinds.map((kind) =>
      el("button", { type: "button", "data-drill": kind, onclick: () => runDrill(kind) }, kind)));
  }
  for (const b of box.querySelectorAll("button")) b.disabled = state.drills.running;
  const pick = $("#drill-service");
  const names = state.services.map((s) => s.name);
  if (pick.dataset.names !== names.join(",")) {
    const chosen = pick.value;
    pick.dataset.names = names.join(",");
    pick.replaceChildren(el("option", { value: "" }, "preferred"),
      ...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) pick.value = chosen;
  }
  // Reports come newest first.
  $("#drill-reports").replaceChildren(...(state.drills.reports || []).slice(0, 5).map(drillLine));
}

function drillLine(r) {
  const t = r.timings_ms || {};
  const c = r.calls || {};
  const when = r.started_at_ms ? new Date(r.started_at_ms).toLocaleTimeString() + " " : "";
  const times = ["detect", "failover", "restart", "recover"]
    .filter((k) => t[k] !== null && t[k] !== undefined)
    .map((k) => k + " " + t[k] + " ms");
  return el("li", { "data-verdict": r.verdict },
    el("span", { class: "sev " + (r.verdict === "pass" ? "sev-info" : "sev-critical") }, r.verdict), " ",
    when + r.kind + " on " + r.service + ": " + (c.ok ?? 0) + "/" + (c.sent ?? 0) + " calls ok, " +
    (c.lost ?? 0) + " lost" + (times.length ? "; " + times.join(", ") : ""));
}

function renderCache(state) {
  const c = state.cache || {};
  $("#cache").textContent = c.enabled === false ? "off" :
    (c.entries ?? 0) + " entries, " + (c.hits ?? 0) + " hits, " + (c.misses ?? 0) + " misses";
}

function renderTools(list) {
  $("#tool-count").textContent = "(" + list.count + ")";
  $("#tools tbody").replaceChildren(...list.tools.map((t) =>
    el("tr", { "data-tool": t.name },
      el("td", { title: t.description || "" }, t.name),
      el("td", {}, t.service),
      el("td", { class: "target" }, t.target || "none ready"),
      el("td", {}, t.providers.join(", ")),
      el("td", {}, t.readOnly ? "yes" : "no"))));
  const select = $("#run-tool");
  const chosen = select.value;
  select.replaceChildren(...list.tools.map((t) => el("option", { value: t.name }, t.name)));
  if (chosen) select.value = chosen;
}

function log(box, line) {
  box.append(line + "\n");
  box.scrollTop = box.scrollHeight;
}

async function runTool(event) {
  event.preventDefault();
  const box = $("#run-log");
  const bar = $("#run-bar");
  const count = $("#run-count");
  box.textContent = "";
  bar.value = 0;
  let args;
  try {
    args = JSON.parse($("#run-args").value || "{}");
  } catch (e) {
    log(box, "arguments are not JSON: " + e.message);
    return;
  }
  const tool = $("#run-tool").value;
  let progress = 0;
  $("#run-go").disabled = true;
  try {
    await sse("/api/mcp/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ toolName: tool, arguments: args }),
    }, (name, data) => {
      let body;
      try { body = JSON.parse(data); } catch (_) { body = data; }
      if (name === "progress") {
        progress += 1;
        if (body.total) { bar.max = body.total; bar.value = body.progress; }
        count.textContent = "progress " + progress + (body.message ? ": " + body.message : "");
        count.dataset.progress = String(progress);
        return;
      }
      const text = typeof body === "string" ? body : JSON.stringify(body);
      log(box, name + ": " + (text.length > 400 ? text.slice(0, 400) + "…" : text));
      if (name === "result") box.dataset.done = body.isError ? "error" : "ok";
      if (name === "error") box.dataset.done = "error";
    });
  } catch (e) {
    log(box, "error: " + e.message);
    box.dataset.done = "error";
  } finally {
    $("#run-go").disabled = false;
  }
}

async function runDrill(kind) {
  const box = $("#drill-log");
  box.textContent = "";
  log(box, "drill " + kind + "…");
  try {
    await sse("/api/drills/" + encodeURIComponent(kind), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ duration: "3s" },
        $("#drill-service").value ? { service: $("#drill-service").value } : {})),
    }, (name, data) => {
      if (name !== "report") {
        log(box, name + ": " + data);
        return;
      }
      const r = JSON.parse(data);
      log(box, "verdict: " + r.verdict);
      for (const c of r.checks || []) log(box, "  " + (c.passed ? "ok  " : "FAIL") + " " + c.name + ": " + c.detail);
    });
  } catch (e) {
    log(box, "error: " + e.message + (String(e.message).startsWith("403") ? " (drills need the admin token)" : ""));
  }
}

let living = false;

async function live() {
  if (living) return;
  living = true;
  try {
    await liveLoop();
  } finally {
    living = false;
  }
}

async function liveLoop() {
  for (;;) {
    try {
      await sse("/api/dashboard/events", {}, (name, data) => {
        setConn("live");
        const body = JSON.parse(data);
        if (name === "state") {
          lastState = body;
          renderServices(body);
          renderAlerts(body);
          renderDrills(body);
          renderCache(body);
        } else if (name === "tools") {
          renderTools(body);
        }
      });
      setConn("down", "disconnected");
    } catch (e) {
      if ($("#auth").hidden) setConn("down", "disconnected");
      if (!$("#auth").hidden) return; // resumes once a token is given
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#run").addEventListener("submit", runTool);
  $("#auth").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("#token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#auth").hidden = true;
    setConn("connecting", "connecting…");
    live();
  });
  live();
});
