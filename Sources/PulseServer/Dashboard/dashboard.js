// Audience Pulse dashboard: segment list and history from the read API, live updates
// from the /v1/stream Server-Sent Events. No dependencies, no build step.
"use strict";

const params = new URLSearchParams(location.search);
let token = params.get("token") || localStorage.getItem("pulse.token") || "";
const HISTORY = 30; // windows shown per chart

const state = {
  segments: new Map(), // segment -> Map(window size -> newest record summary)
  selected: params.get("segment"),
  window: params.get("window"),
  records: new Map(), // start_ms -> record of the selected segment and window size
  sizes: new Set(), // window sizes seen
  autoSelected: false, // the segment was picked for the user (prefer "all" once it appears)
  renderQueued: false,
  received: 0, // records received live (shown as data-received on <body>)
};

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const percent = (v) => (v == null ? "–" : (v * 100).toFixed(1) + " %");
const seconds = (ms) => (ms == null ? "–" : decimal.format(ms / 1000) + " s");
const clock = (ms) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function apiURL(path) {
  const url = new URL(path, location.href);
  if (token) url.searchParams.set("token", token);
  return url;
}

async function getJSON(path) {
  const response = await fetch(apiURL(path));
  if (response.status === 401) {
    const entered = prompt("This dashboard needs an access token:");
    if (entered) {
      localStorage.setItem("pulse.token", entered);
      token = entered;
      return getJSON(path);
    }
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// ---- Segment list -------------------------------------------------------------------

function summarize(record) {
  return {
    size: record.window.size, start_ms: record.window.start_ms, end_ms: record.window.end_ms, final: record.final,
    events: record.events, unique_users: record.users.unique, engagement_rate: record.engagement.rate,
    conversion_rate: record.conversion ? record.conversion.rate : null, anomaly: record.trend ? record.trend.anomaly : null,
  };
}

function remember(segment, summary) {
  const windows = state.segments.get(segment) || new Map();
  const known = windows.get(summary.size);
  if (!known || summary.start_ms >= known.start_ms) windows.set(summary.size, summary);
  const isNew = !state.segments.has(segment);
  state.segments.set(segment, windows);
  return isNew;
}

function renderSegments() {
  const search = $("search").value.trim().toLowerCase();
  const list = $("segments");
  const names = [...state.segments.keys()]
    .filter((name) => !search || name.toLowerCase().includes(search))
    .sort((a, b) => (a === "all" ? -1 : b === "all" ? 1 : a.localeCompare(b)));
  list.replaceChildren(...names.map((name) => {
    const item = document.createElement("li");
    item.dataset.segment = name;
    item.setAttribute("aria-selected", String(name === state.selected));
    const latest = state.segments.get(name).get(state.window);
    const label = document.createElement("span");
    label.textContent = name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = latest ? number.format(latest.events) : "";
    item.append(label, count);
    item.addEventListener("click", () => select(name));
    return item;
  }));
}

function renderWindows(sizes) {
  const select = $("window");
  if (select.options.length === sizes.length) return;
  select.replaceChildren(...sizes.map((size) => new Option(size, size, false, size === state.window)));
}

// ---- Selected segment ---------------------------------------------------------------

async function select(segment) {
  state.selected = segment;
  state.records = new Map();
  const query = new URLSearchParams({ window: state.window });
  const answer = await getJSON(`v1/segments/${encodeURIComponent(segment)}/metrics?${query}`);
  if (state.selected !== segment) return;
  for (const record of answer.records) keep(record);
  const url = new URL(location.href);
  url.searchParams.set("segment", segment);
  history.replaceState(null, "", url);
  scheduleRender();
}

function keep(record) {
  const known = state.records.get(record.window.start_ms);
  if (known && known.final && !record.final) return;
  state.records.set(record.window.start_ms, record);
  if (state.records.size > HISTORY * 2) {
    const oldest = [...state.records.keys()].sort((a, b) => a - b).slice(0, state.records.size - HISTORY);
    for (const start of oldest) state.records.delete(start);
  }
}

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    renderSegments();
    renderDetail();
  });
}

function renderDetail() {
  const records = [...state.records.values()].sort((a, b) => a.window.start_ms - b.window.start_ms).slice(-HISTORY);
  $("segment-name").textContent = state.selected || "—";
  document.body.dataset.records = String(records.length);
  const latest = records[records.length - 1];
  if (!latest) return;
  $("window-label").textContent = `${state.window} window ${clock(latest.window.start_ms)}–${clock(latest.window.end_ms)}` +
    (latest.final ? " (final)" : " (open, updating)");
  $("stat-events").textContent = number.format(latest.events);
  $("stat-users").textContent = number.format(latest.users.unique);
  $("stat-engagement").textContent = percent(latest.engagement.rate);
  // A deployment may leave conversion, dwell quantiles and top content out (metrics.include).
  $("stat-conversion").textContent = percent(latest.conversion ? latest.conversion.rate : null);
  $("stat-dwell").textContent = `${seconds(latest.dwell_ms.p50)} / ${seconds(latest.dwell_ms.p90)}`;

  const finals = records.filter((r) => r.final && r.trend);
  const lastFinal = finals[finals.length - 1];
  const step = records.length > 1 ? records[1].window.start_ms - records[0].window.start_ms : latest.window.end_ms - latest.window.start_ms;
  const forecast = lastFinal && lastFinal.trend.forecast != null ? { x: lastFinal.window.start_ms + step, y: lastFinal.trend.forecast, from: lastFinal } : null;
  $("stat-forecast").textContent = forecast ? number.format(forecast.y) : "–";

  const point = (r, y) => ({ x: r.window.start_ms, y, open: !r.final, anomaly: r.trend ? r.trend.anomaly : false });
  chart($("chart-events"), [records.map((r) => point(r, r.events))], { forecast, step, format: number.format });
  chart($("chart-users"), [records.map((r) => point(r, r.users.unique))], { step, format: number.format });
  chart($("chart-engagement"), [records.filter((r) => r.engagement.rate != null).map((r) => point(r, r.engagement.rate))], { step, format: percent });
  chart($("chart-conversion"), [records.filter((r) => r.conversion && r.conversion.rate != null).map((r) => point(r, r.conversion.rate))],
    { step, format: percent, absent: !latest.conversion });
  const dwell = records.filter((r) => r.dwell_ms.p50 != null);
  chart($("chart-dwell"), [dwell.map((r) => point(r, r.dwell_ms.p50 / 1000)), dwell.map((r) => point(r, r.dwell_ms.p90 / 1000))],
    { step, format: decimal.format, absent: !("p50" in latest.dwell_ms) });

  const absent = document.createElement("li");
  absent.textContent = "not computed here (metrics.include)";
  $("top-content").replaceChildren(...(latest.top_content ? latest.top_content.map((item) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = item.content_id;
    const views = document.createElement("span");
    views.textContent = number.format(item.views);
    li.append(name, views);
    return li;
  }) : [absent]));
  $("quality-invalid").textContent = number.format(latest.quality.invalid);
  $("quality-late").textContent = number.format(latest.quality.late);
  $("quality-duplicates").textContent = number.format(latest.quality.duplicates);
}

// ---- Charts (SVG) -------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text != null) node.textContent = text;
  return node;
}

// series: arrays of {x, y, open, anomaly}; options: {forecast: {x, y, from}, step, format,
// absent: the deployment does not compute this metric}
function chart(svg, series, options) {
  const width = svg.clientWidth || 340, height = svg.clientHeight || 150;
  const left = 44, right = 10, top = 8, bottom = 18;
  const all = series.flat();
  const nodes = [];
  if (all.length === 0) {
    svg.replaceChildren(element("text", { x: left, y: height / 2 }, options.absent ? "not computed here (metrics.include)" : "waiting for data…"));
    return;
  }
  const xs = all.map((p) => p.x).concat(options.forecast ? [options.forecast.x] : []);
  const ys = all.map((p) => p.y).concat(options.forecast ? [options.forecast.y] : []);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + options.step);
  const y1 = Math.max(...ys, 0) * 1.1 || 1;
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const sy = (y) => height - bottom - (y / y1) * (height - top - bottom);
  nodes.push(element("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  nodes.push(element("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
  nodes.push(element("text", { x: 2, y: top + 8 }, options.format(y1)));
  nodes.push(element("text", { x: 2, y: height - bottom }, options.format(0)));
  nodes.push(element("text", { x: left, y: height - 4 }, clock(x0)));
  nodes.push(element("text", { x: width - right, y: height - 4, "text-anchor": "end" }, clock(x1)));
  series.forEach((points, index) => {
    if (points.length === 0) return;
    const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
    nodes.push(element("path", { class: index ? "series second" : "series", d }));
    for (const p of points) {
      if (p.anomaly) nodes.push(element("circle", { class: "anomaly", cx: sx(p.x), cy: sy(p.y), r: 4.5 }, null));
      else if (p.open && index === 0) nodes.push(element("circle", { class: "open", cx: sx(p.x), cy: sy(p.y), r: 3 }));
    }
  });
  const f = options.forecast;
  if (f) {
    nodes.push(element("path", { class: "forecast", d: `M${sx(f.from.window.start_ms)},${sy(f.from.events)}L${sx(f.x)},${sy(f.y)}` }));
    nodes.push(element("circle", { class: "forecast", cx: sx(f.x), cy: sy(f.y), r: 4 }));
  }
  svg.replaceChildren(...nodes);
}

// ---- Live updates -------------------------------------------------------------------

function connect() {
  const badge = $("connection");
  const source = new EventSource(apiURL("v1/stream"));
  source.addEventListener("open", () => { badge.dataset.state = "live"; badge.textContent = "live"; });
  source.addEventListener("error", () => { badge.dataset.state = "error"; badge.textContent = "reconnecting…"; });
  source.addEventListener("record", (event) => {
    const record = JSON.parse(event.data);
    document.body.dataset.received = String(++state.received);
    remember(record.segment, summarize(record));
    if (!state.sizes.has(record.window.size)) {
      state.sizes.add(record.window.size);
      if (!state.window) state.window = record.window.size;
      renderWindows([...state.sizes].sort());
    }
    if (!state.selected || (state.autoSelected && record.segment === "all" && state.selected !== "all")) {
      state.selected = record.segment;
      state.autoSelected = record.segment !== "all";
      state.records = new Map();
    }
    if (record.segment === state.selected && record.window.size === state.window) keep(record);
    scheduleRender();
  });
}

async function start() {
  $("search").addEventListener("input", renderSegments);
  $("window").addEventListener("change", (event) => { state.window = event.target.value; select(state.selected); });
  connect();
  const answer = await getJSON("v1/segments");
  for (const entry of answer.segments) for (const summary of entry.windows) remember(entry.segment, summary);
  for (const size of answer.windows) state.sizes.add(size);
  state.window = state.window || answer.windows[0] || null;
  renderWindows([...state.sizes].sort());
  if (!state.selected && answer.segments.length) state.selected = answer.segments[0].segment;
  if (state.selected) await select(state.selected);
  else scheduleRender();
}

start().catch((error) => {
  $("connection").dataset.state = "error";
  $("connection").textContent = String(error.message || error);
});
