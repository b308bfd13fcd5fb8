// The review page: map (MapLibre GL, vendored), candidate list, time series, verdicts.
// Everything comes from tools/dashboard's API, which reads the database.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, year: null, model: null, selected: null, candidates: [], tileRev: 0 };
// For the browser test and for debugging: what has happened so far.
window.r4 = { state, map: null, events: [] };

const VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];

function status(msg) { $("status").textContent = msg; }
function note(ev) { window.r4.events.push(ev); document.body.dataset[ev] = "1"; }

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function query(extra) {
  return new URLSearchParams(Object.assign({ year: state.year, model: state.model }, extra || {})).toString();
}

function fmt(v, d) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); }

function scoreColor() {
  const [lo, hi] = state.config.score_range || [0, 1];
  const a = lo === null ? 0 : lo, b = hi === null || hi <= a ? a + 1e-9 : hi;
  const stops = [];
  VIRIDIS.forEach((c, i) => { stops.push(a + (b - a) * i / (VIRIDIS.length - 1), c); });
  $("score-lo").textContent = fmt(a, 4);
  $("score-hi").textContent = fmt(b, 4);
  return ["case", ["==", ["get", "score"], null], "#999999",
          ["interpolate", ["linear"], ["get", "score"]].concat(stops)];
}

function tileUrl() {
  return location.origin + "/api/tiles/{z}/{x}/{y}.pbf?" + query({ rev: state.tileRev });
}

async function loadConfig() {
  const q = new URLSearchParams();
  if (state.year) q.set("year", state.year);
  if (state.model) q.set("model", state.model);
  state.config = await api("/api/config?" + q);
  state.year = state.config.year;
  state.model = state.config.model;
  fill($("model"), state.config.models, state.model);
  fill($("year"), state.config.years.slice(1), state.year);
  const dates = state.config.dates.filter((d) => d.startsWith(String(state.year)));
  // Default imagery: the date nearest mid-summer of the year.
  const mid = Date.parse(state.year + "-07-01");
  const best = dates.slice().sort((a, b) => Math.abs(Date.parse(a) - mid) - Math.abs(Date.parse(b) - mid))[0];
  fill($("date"), state.config.dates, best);
}

function fill(sel, values, current) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = o.textContent = v;
    if (String(v) === String(current)) o.selected = true;
    sel.appendChild(o);
  }
}

async function imagerySource() {
  const d = $("date").value;
  if (!d) return null;
  const m = await api("/api/imagery?" + new URLSearchParams({ date: d, bands: $("bands").value }));
  return { type: "image", url: m.url, coordinates: m.coordinates };
}

async function heatSource() {
  const m = await api("/api/heatmap?" + query());
  return m.coordinates.length ? { type: "image", url: m.url, coordinates: m.coordinates } : null;
}

async function buildMap() {
  const [img, heat] = await Promise.all([imagerySource(), heatSource()]);
  const sources = {
    patches: { type: "vector", tiles: [tileUrl()], minzoom: 8, maxzoom: 15, promoteId: "patch_key" },
  };
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#dfe6ec" } }];
  if (img) {
    sources.imagery = img;
    layers.push({ id: "imagery-layer", type: "raster", source: "imagery", paint: { "raster-fade-duration": 0 } });
  }
  if (heat) {
    // The PNG comes upscaled (each cell a block of pixels), so linear filtering keeps the cells
    // crisp; "raster-resampling": "nearest" draws image sources black under SwiftShader.
    sources.heat = heat;
    layers.push({ id: "heat-layer", type: "raster", source: "heat",
                  paint: { "raster-opacity": 0.55, "raster-fade-duration": 0 } });
  }
  layers.push(
    { id: "patches-fill", type: "fill", source: "patches", "source-layer": "patches",
      paint: { "fill-color": "#000000", "fill-opacity": 0.01 } },
    { id: "patches-line", type: "line", source: "patches", "source-layer": "patches",
      paint: { "line-color": scoreColor(), "line-width": ["case", ["==", ["get", "changed"], true], 3.5, 1] } },
    { id: "selected-line", type: "line", source: "patches", "source-layer": "patches",
      filter: ["==", ["get", "patch_key"], ""], paint: { "line-color": "#00e5ff", "line-width": 4 } });
  const b = state.config.bounds;
  const map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources, layers },
    bounds: b ? [[b[0], b[1]], [b[2], b[3]]] : undefined,
    fitBoundsOptions: { padding: 30 },
    attributionControl: false,
  });
  window.r4.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  map.on("error", (e) => { console.error("map:", e.error && e.error.message); });
  map.on("click", "patches-fill", (e) => { if (e.features.length) select(e.features[0].properties.patch_key); });
  map.on("mouseenter", "patches-fill", () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "patches-fill", () => { map.getCanvas().style.cursor = ""; });
  map.on("idle", () => {
    if (map.getSource("heat") && map.isSourceLoaded("heat")) note("heatLoaded");
    if (map.getSource("imagery") && map.isSourceLoaded("imagery")) note("imageryLoaded");
    if (map.querySourceFeatures("patches", { sourceLayer: "patches" }).length) note("patchesLoaded");
    note("mapIdle");
  });
}

async function refreshSources() {
  const map = window.r4.map;
  const [img, heat] = await Promise.all([imagerySource(), heatSource()]);
  if (img && map.getSource("imagery")) map.getSource("imagery").updateImage({ url: img.url, coordinates: img.coordinates });
  if (heat && map.getSource("heat")) map.getSource("heat").updateImage({ url: heat.url, coordinates: heat.coordinates });
  map.setPaintProperty("patches-line", "line-color", scoreColor());
  map.getSource("patches").setTiles([tileUrl()]);
}

async function loadCandidates() {
  const c = await api("/api/candidates?" + query());
  state.candidates = c.candidates;
  renderCandidates();
}

function renderCandidates() {
  const only = $("only-changed").checked;
  const rows = state.candidates.filter((c) => !only || c.changed);
  $("count").textContent = "(" + rows.length + " of " + state.candidates.length + ")";
  const tb = $("candidates").querySelector("tbody");
  tb.innerHTML = "";
  for (const c of rows) {
    const tr = document.createElement("tr");
    tr.dataset.patch = c.patch_id;
    if (c.patch_id === state.selected) tr.className = "selected";
    tr.innerHTML = "<td></td><td></td><td></td><td></td>";
    tr.children[0].textContent = c.sample_id;
    tr.children[1].textContent = fmt(c.score, 4);
    tr.children[2].textContent = c.onset || "–";
    tr.children[3].textContent = c.verdict || "";
    tr.children[3].className = c.verdict || "";
    tr.addEventListener("click", () => select(c.patch_id));
    tb.appendChild(tr);
  }
  note("candidatesLoaded");
}

async function select(pid) {
  state.selected = pid;
  renderCandidates();
  const map = window.r4.map;
  if (map) map.setFilter("selected-line", ["==", ["get", "patch_key"], pid]);
  const bands = $("bands").value;
  const s = await api("/api/series?" + query({ patch_id: pid, bands }));
  $("detail").hidden = false;
  $("detail-title").textContent = s.sample_id + " · " + s.year;
  $("detail-facts").textContent = "score " + fmt(s.score, 4) + (s.changed ? " · changed" : " · unchanged") +
    (s.onset ? " · onset " + s.onset : "") + " · day threshold " + fmt(s.threshold, 4) + " · model " + s.model;
  drawChart(s);
  const stretch = s.stretch ? { low: s.stretch[0], high: s.stretch[1] } : {};
  for (const [k, im] of [["before", s.before], ["after", s.after]]) {
    $(k).src = im ? "/api/image.png?" + new URLSearchParams(Object.assign({ image_id: im.image_id, bands }, stretch)) : "";
    $(k + "-cap").textContent = k + (im ? ": " + im.acquired : ": no image");
  }
  const c = state.candidates.find((x) => x.patch_id === pid);
  $("verdict").textContent = c && c.verdict ? "verdict: " + c.verdict + " by " + c.reviewer + " at " + c.reviewed_at : "not reviewed";
  note("seriesShown");
}

function drawChart(s) {
  const svg = $("chart"), W = 420, H = 220, L = 40, R = 10, T = 10, B = 30;
  const ns = "http://www.w3.org/2000/svg";
  svg.innerHTML = "";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  const years = Object.keys(s.series).sort();
  let ymax = s.threshold || 0;
  for (const y of years) for (const p of s.series[y]) ymax = Math.max(ymax, p[1]);
  ymax = ymax > 0 ? ymax * 1.15 : 1;
  const doy = (d) => (Date.parse(d) - Date.parse(d.slice(0, 4) + "-01-01")) / 864e5;
  const X = (d) => L + (W - L - R) * doy(d) / 365, Y = (v) => H - B - (H - T - B) * v / ymax;
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  ["Jan", "Apr", "Jul", "Oct"].forEach((m, i) => el("text", { x: L + (W - L - R) * i / 4, y: H - B + 14 }, m));
  el("text", { x: 2, y: T + 8 }, fmt(ymax, 4));
  el("text", { x: 2, y: H - B }, "0");
  el("text", { x: L + 4, y: H - 4 }, "cosine distance to the image a year earlier, by day of year");
  if (s.threshold !== null) {
    el("line", { x1: L, y1: Y(s.threshold), x2: W - R, y2: Y(s.threshold), class: "threshold" });
    el("text", { x: L + 4, y: Y(s.threshold) - 3, fill: "#b42318" }, "threshold " + fmt(s.threshold, 4));
  }
  const colours = { [years[0]]: "#8a8a8a", [years[1]]: "#1f5fbf" };
  years.forEach((y, i) => {
    const pts = s.series[y];
    el("text", { x: L + 8 + 90 * i, y: T + 10, fill: colours[y] }, y + (pts.length ? "" : " (no pairs)"));
    if (!pts.length) return;
    el("polyline", { points: pts.map((p) => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none",
                     stroke: colours[y], "stroke-width": 1.8, class: "series series-" + y });
    for (const p of pts) {
      const c = el("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.6, fill: colours[y] });
      const t = document.createElementNS(ns, "title");
      t.textContent = p[0] + ": " + fmt(p[1], 5);
      c.appendChild(t);
    }
  });
  if (s.onset) el("line", { x1: X(s.onset), y1: T, x2: X(s.onset), y2: H - B, stroke: "#e07b00", "stroke-dasharray": "2 2" });
}

async function review(verdict) {
  if (!state.selected) return;
  const r = await api("/api/review", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ patch_id: state.selected, year: state.year, model: state.model, verdict,
                           reviewer: $("reviewer").value.trim() || null }),
  });
  $("verdict").textContent = "stored: " + r.verdict + " by " + r.reviewer + " at " + r.reviewed_at;
  const c = state.candidates.find((x) => x.patch_id === r.patch_id);
  if (c) Object.assign(c, { verdict: r.verdict, reviewer: r.reviewer, reviewed_at: r.reviewed_at });
  renderCandidates();
  state.tileRev += 1;
  window.r4.map.getSource("patches").setTiles([tileUrl()]);
  note("verdictStored");
}

async function main() {
  status("loading…");
  $("reviewer").value = localStorage.getItem("r4-reviewer") || "";
  $("reviewer").addEventListener("change", () => localStorage.setItem("r4-reviewer", $("reviewer").value));
  await loadConfig();
  await buildMap();
  await loadCandidates();
  const reload = async () => {
    state.year = Number($("year").value);
    state.model = $("model").value;
    await loadConfig();
    await refreshSources();
    await loadCandidates();
  };
  $("year").addEventListener("change", reload);
  $("model").addEventListener("change", reload);
  $("date").addEventListener("change", refreshSources);
  $("bands").addEventListener("change", async () => { await refreshSources(); if (state.selected) select(state.selected); });
  $("show-heat").addEventListener("change", () => {
    if (window.r4.map.getLayer("heat-layer"))
      window.r4.map.setLayoutProperty("heat-layer", "visibility", $("show-heat").checked ? "visible" : "none");
  });
  $("only-changed").addEventListener("change", renderCandidates);
  $("accept").addEventListener("click", () => review("accept").catch(fail));
  $("reject").addEventListener("click", () => review("reject").catch(fail));
  $("unsure").addEventListener("click", () => review("unsure").catch(fail));
  status(state.model + " · " + state.year + " · " + state.config.sensor);
  note("ready");
}

function fail(e) { status("error: " + e.message); console.error(e); }
main().catch(fail);
