// tnnspec view: the page's logic. No framework, no build step.
//
// The server sends `event: version` on /events after every rebuild; the page then fetches
// /api/state (JSON) and redraws. The pictures are graphviz SVGs: area nodes are <g class="node">
// whose <title> is the area name, edges <g class="edge"> whose id is the edge name (NAME@tN in
// the unrolled picture, whose cells are named AREA__tN).
"use strict";

(function () {
  const XLINK = "http://www.w3.org/1999/xlink";
  const VIEWS = ["area_graph", "unrolled"];
  const $ = (id) => document.getElementById(id);

  let state = null;       // the last state received
  let session = null;     // the server's run: versions restart in a new one
  let version = -1;
  let shownPicture = null; // picture_version of the SVGs on the page
  let activeView = "area_graph";
  let pinned = null;      // {kind, name, step?} clicked
  let hovered = null;     // {kind, name, step?, tip} under the pointer
  const zoomers = {};

  // ------------------------------------------------------------ small DOM helper
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  const num = (n) => (n === null || n === undefined ? "?" : n.toLocaleString("en-US"));
  const fmt = (x) => (Number.isInteger(x) ? String(x) : String(+x.toPrecision(6)));
  const shape = (s) => (s && s.length ? s.join("\u00d7") : "?");

  // ------------------------------------------------------------ pan and zoom
  class PanZoom {
    constructor(host) {
      this.host = host;
      this.svg = null;
      this.home = null;   // the picture's own viewBox
      this.box = null;    // the viewBox shown
      this.moved = false; // the user zoomed or panned: keep the view across updates
      this.drag = null;
      this.dragged = false;
      host.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
      host.addEventListener("pointerdown", (e) => this.onDown(e));
      host.addEventListener("pointermove", (e) => this.onMove(e));
      host.addEventListener("pointerup", (e) => this.onUp(e));
      host.addEventListener("pointercancel", (e) => this.onUp(e));
    }

    set(svg) {
      const keep = this.moved && this.box;
      this.host.replaceChildren(svg);
      this.svg = svg;
      const vb = svg.viewBox.baseVal;
      this.home = { x: vb.x, y: vb.y, w: vb.width || 1, h: vb.height || 1 };
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
      if (keep) this.apply();
      else this.fit();
    }

    clear() {
      this.host.replaceChildren();
      this.svg = null;
      this.home = this.box = null;
      this.moved = false;
    }

    fit() {
      if (!this.home) return;
      const m = 0.02 * Math.max(this.home.w, this.home.h);
      this.box = { x: this.home.x - m, y: this.home.y - m, w: this.home.w + 2 * m, h: this.home.h + 2 * m };
      this.moved = false;
      this.apply();
    }

    apply() {
      const b = this.box;
      this.svg.setAttribute("viewBox", `${b.x} ${b.y} ${b.w} ${b.h}`);
    }

    scale() { // screen pixels per picture unit ("meet": the whole box shows, centred)
      const r = this.host.getBoundingClientRect();
      return Math.min(r.width / this.box.w, r.height / this.box.h) || 1;
    }

    toPicture(clientX, clientY) {
      const r = this.host.getBoundingClientRect();
      const s = this.scale();
      const ox = r.left + (r.width - this.box.w * s) / 2;
      const oy = r.top + (r.height - this.box.h * s) / 2;
      return { x: this.box.x + (clientX - ox) / s, y: this.box.y + (clientY - oy) / s };
    }

    zoom(factor, clientX, clientY) { // factor > 1 zooms in, keeping the point under the pointer
      if (!this.box) return;
      const w = Math.min(Math.max(this.box.w / factor, this.home.w / 60), this.home.w * 8);
      const f = this.box.w / w;
      const p = this.toPicture(clientX, clientY);
      this.box = { x: p.x - (p.x - this.box.x) / f, y: p.y - (p.y - this.box.y) / f, w: this.box.w / f, h: this.box.h / f };
      this.moved = true;
      this.apply();
    }

    zoomCentre(factor) {
      const r = this.host.getBoundingClientRect();
      this.zoom(factor, r.left + r.width / 2, r.top + r.height / 2);
    }

    onWheel(e) {
      if (!this.svg) return;
      e.preventDefault();
      let dy = e.deltaY;
      if (e.deltaMode === 1) dy *= 16;
      else if (e.deltaMode === 2) dy *= 400;
      this.zoom(Math.exp(-dy * 0.0015), e.clientX, e.clientY);
    }

    onDown(e) {
      if (e.button !== 0 || !this.svg) return;
      this.dragged = false;
      this.drag = { x: e.clientX, y: e.clientY, box: { ...this.box }, active: false };
    }

    onMove(e) {
      const d = this.drag;
      if (!d) return;
      const dx = e.clientX - d.x, dy = e.clientY - d.y;
      if (!d.active) {
        if (Math.hypot(dx, dy) < 4) return; // a click, so far
        d.active = true;
        this.host.setPointerCapture(e.pointerId);
        this.host.classList.add("dragging");
      }
      const s = this.scale();
      this.box = { x: d.box.x - dx / s, y: d.box.y - dy / s, w: d.box.w, h: d.box.h };
      this.moved = true;
      this.apply();
    }

    onUp() {
      const d = this.drag;
      this.drag = null;
      if (!d) return;
      this.dragged = d.active; // the click that follows a drag picks nothing
      this.host.classList.remove("dragging");
    }
  }

  // ------------------------------------------------------------ pictures
  function describe(g, view) {
    // what a graphviz <g> stands for: {kind, name, step?} or null (legend, spine, labels)
    const title = g.dataset.title;
    if (g.classList.contains("node")) {
      let name = title, step;
      if (view === "unrolled") {
        const m = /^(.*)__t(\d+)$/.exec(title);
        if (!m) return null;
        name = m[1];
        step = +m[2];
      }
      if (state.areas[name]) return { kind: "area", name, step };
      if (state.inputs[name]) return { kind: "input", name, step };
      if (name.startsWith("_readout_") && state.readouts[name.slice(9)]) return { kind: "readout", name: name.slice(9) };
      return null;
    }
    let name = g.dataset.gid, step;
    if (view === "unrolled") {
      const m = /^(.*)@t(\d+)$/.exec(name);
      if (!m) return null;
      name = m[1];
      step = +m[2];
    }
    return state.edges[name] ? { kind: "edge", name, step } : null;
  }

  function prepare(text, view) {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    if (doc.querySelector("parsererror")) return null;
    const svg = document.importNode(doc.documentElement, true);
    for (const g of svg.querySelectorAll("g.node, g.edge")) {
      const title = g.querySelector(":scope > title");
      g.dataset.title = title ? title.textContent : "";
      g.dataset.gid = g.id || "";
      const a = g.querySelector("a");
      if (a) {
        g.dataset.tip = a.getAttributeNS(XLINK, "title") || "";
        a.removeAttributeNS(XLINK, "title"); // the details panel replaces the browser's tooltips
      }
      if (g.classList.contains("edge")) {
        const arrow = g.dataset.title.indexOf("->"); // names hold no '>': this is the arrow
        g.dataset.tail = g.dataset.title.slice(0, arrow);
        g.dataset.head = g.dataset.title.slice(arrow + 2);
      }
      const what = describe(g, view);
      if (!what) continue;
      g.classList.add("pickable");
      g.dataset.kind = what.kind;
      g.dataset.name = what.name;
      if (what.step !== undefined) g.dataset.step = String(what.step);
      if (what.kind === "edge") { // a wide invisible stroke makes thin edges easy to point at
        const path = g.querySelector("path");
        if (path) {
          const hit = document.createElementNS(path.namespaceURI, "path");
          hit.setAttribute("d", path.getAttribute("d"));
          hit.setAttribute("class", "hit");
          path.parentNode.insertBefore(hit, path.nextSibling);
        }
      }
    }
    for (const t of svg.querySelectorAll("title")) t.remove();
    if (!text.includes("url(#")) { // graphviz ids repeat across the two pictures
      for (const n of svg.querySelectorAll("[id]")) n.removeAttribute("id");
    }
    return svg;
  }

  function showPictures(s) {
    const message = $("picture-message");
    if (!s.svg.area_graph && !s.svg.unrolled) {
      for (const v of VIEWS) zoomers[v].clear();
      shownPicture = null;
      message.textContent = s.svg_error || (s.picture_version === null
        ? "No valid version of the file yet: fix the errors above and save."
        : "Nothing to draw.");
      message.hidden = false;
      return;
    }
    message.hidden = true;
    if (shownPicture !== `${s.session}/${s.picture_version}`) {
      shownPicture = `${s.session}/${s.picture_version}`;
      for (const v of VIEWS) {
        const svg = s.svg[v] ? prepare(s.svg[v], v) : null;
        if (svg) zoomers[v].set(svg);
        else zoomers[v].clear();
      }
      const tab = document.querySelector('.tab[data-view="unrolled"]');
      tab.textContent = s.time ? `Unrolled (${s.time.steps} steps)` : "Unrolled";
    }
    for (const v of VIEWS) $(`canvas-${v}`).classList.toggle("stale-picture", !!s.stale);
    highlight();
  }

  function matches(g, sel) {
    return g.dataset.kind === sel.kind && g.dataset.name === sel.name &&
      (sel.step === undefined || g.dataset.step === String(sel.step));
  }

  function highlight() {
    for (const v of VIEWS) {
      const svg = zoomers[v].svg;
      if (!svg) continue;
      const all = svg.querySelectorAll("g.pickable");
      const chosen = new Set();
      for (const g of all) {
        g.classList.remove("selected", "related", "hover");
        if (pinned && matches(g, pinned)) chosen.add(g);
        if (hovered && hovered.view === v && matches(g, hovered)) g.classList.add("hover");
      }
      svg.classList.toggle("focus", chosen.size > 0);
      if (!chosen.size) continue;
      const nodes = new Set(), edges = new Set();
      for (const g of chosen) {
        g.classList.add("selected", "related");
        if (g.classList.contains("edge")) {
          nodes.add(g.dataset.tail);
          nodes.add(g.dataset.head);
        } else {
          nodes.add(g.dataset.title);
          edges.add(g.dataset.title);
        }
      }
      for (const g of all) {
        if (g.classList.contains("node") ? nodes.has(g.dataset.title)
          : edges.has(g.dataset.tail) || edges.has(g.dataset.head)) {
          g.classList.add("related");
          if (g.classList.contains("edge")) { nodes.add(g.dataset.tail); nodes.add(g.dataset.head); }
        }
      }
      for (const g of all) if (g.classList.contains("node") && nodes.has(g.dataset.title)) g.classList.add("related");
    }
  }

  function pick(e) {
    const z = zoomers[activeView];
    if (z.dragged) { z.dragged = false; return; }
    const g = e.target.closest("g.pickable");
    pinned = g ? { kind: g.dataset.kind, name: g.dataset.name, step: g.dataset.step === undefined ? undefined : +g.dataset.step, tip: g.dataset.tip } : null;
    highlight();
    showDetails();
  }

  function hover(e, view) {
    if (zoomers[view].drag && zoomers[view].drag.active) return;
    const g = e.target.closest("g.pickable");
    const next = g ? { view, kind: g.dataset.kind, name: g.dataset.name, step: g.dataset.step === undefined ? undefined : +g.dataset.step, tip: g.dataset.tip } : null;
    const same = (a, b) => (a && b ? a.kind === b.kind && a.name === b.name && a.step === b.step : a === b);
    if (same(next, hovered)) return;
    hovered = next;
    highlight();
    showDetails();
  }

  // ------------------------------------------------------------ details
  function chips(names) {
    if (!names.length) return el("span", { class: "muted" }, "none");
    return el("div", { class: "chips" }, names.map((n) => {
      const e = state.edges[n];
      return el("button", {
        type: "button", class: `chip t-${e ? e.type : ""}`, title: e ? `${e.type}, delay ${e.delay_steps}` : "",
        onclick: () => { pinned = { kind: "edge", name: n }; highlight(); showDetails(); },
      }, n);
    }));
  }

  function props(rows) {
    return el("dl", { class: "props" }, rows.filter(Boolean).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function stepText(step) {
    return step === undefined || !state.time ? null : `t=${step} (${fmt(step * state.time.dt_ms)} ms)`;
  }

  function details(sel) {
    const dt = state.time ? state.time.dt_ms : null;
    if (sel.kind === "area") {
      const a = state.areas[sel.name];
      if (!a) return null;
      const cellParams = Object.entries(a.cell.params).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
      return [
        el("div", { class: "det-head" }, el("span", { class: "kind area" }, "area"), el("h3", {}, a.name),
          a.group ? el("span", { class: "muted" }, a.group) : null),
        props([
          sel.step !== undefined && ["step", [stepText(sel.step), sel.tip ? el("div", { class: "muted" }, sel.tip.replace(/^.*?: /, "")) : null]],
          ["level", `${fmt(a.level)}${a.level_given ? "" : " (from its bottom-up inputs)"}`],
          ["cell", [el("code", {}, a.cell.type), cellParams.length ? el("div", {}, el("code", {}, cellParams.join(", "))) : null]],
          ["ops", a.ops.length ? el("code", {}, a.ops.join(" \u2192 ")) : el("span", { class: "muted" }, "none")],
          ["channels", String(a.channels)],
          ["output shape", [el("code", {}, shape(a.output_shape)), a.drive_shape && shape(a.drive_shape) !== shape(a.output_shape) ? ` (drive ${shape(a.drive_shape)})` : ""]],
          ["parameters", a.params === null ? el("span", { class: "muted" }, "unknown (see the summary)") : `${num(a.params)} (area + incoming edges)`],
          ["arrival", a.arrival === null ? "never (no path from an input)" : `step ${a.arrival} (${fmt(a.arrival_ms)} ms)`],
          ["before arrival", a.before_arrival],
          a.combine !== "sum" && ["combine", a.combine],
          !a.enabled && ["enabled", "no (lesioned)"],
          ["incoming", chips(a.in_edges)],
          ["outgoing", chips(a.out_edges)],
        ]),
        a.description ? el("p", { class: "note" }, a.description) : null,
      ];
    }
    if (sel.kind === "edge") {
      const e = state.edges[sel.name];
      if (!e) return null;
      return [
        el("div", { class: "det-head" }, el("span", { class: `kind edge t-${e.type}` }, e.type), el("h3", {}, e.name)),
        props([
          ["from \u2192 to", `${e.source} \u2192 ${e.target}`],
          sel.step !== undefined && ["delivers", [stepText(sel.step), sel.tip ? el("div", { class: "muted" }, sel.tip.replace(/^.*?: /, "")) : null]],
          ["type", e.type + (e.mode ? ` (${e.mode})` : "")],
          ["transform", e.transform.length ? el("code", {}, e.transform.join(" \u2192 ")) : el("span", { class: "muted" }, "none (identity)")],
          ["delay", `${e.delay_steps} step${e.delay_steps === 1 ? "" : "s"} = ${fmt(e.delay_ms)} ms` + (dt ? ` (dt ${fmt(dt)} ms)` : "")],
          ["weight", fmt(e.weight)],
          e.from_step > 0 && ["from step", String(e.from_step)],
          ["parameters", e.params === null ? el("span", { class: "muted" }, "unknown") : num(e.params)],
          !e.enabled && ["enabled", "no (lesioned)"],
        ]),
        e.description ? el("p", { class: "note" }, e.description) : null,
      ];
    }
    if (sel.kind === "input") {
      const i = state.inputs[sel.name];
      if (!i) return null;
      return [
        el("div", { class: "det-head" }, el("span", { class: "kind input" }, "input"), el("h3", {}, i.name)),
        props([
          sel.step !== undefined && ["step", [stepText(sel.step), sel.tip ? el("div", { class: "muted" }, sel.tip.replace(/^.*?: /, "")) : null]],
          ["shape", el("code", {}, shape(i.shape))],
          ["schedule", el("code", {}, i.schedule)],
          ["outgoing", chips(i.out_edges)],
        ]),
        i.description ? el("p", { class: "note" }, i.description) : null,
      ];
    }
    if (sel.kind === "readout") {
      const r = state.readouts[sel.name];
      if (!r) return null;
      return [
        el("div", { class: "det-head" }, el("span", { class: "kind readout" }, "readout"), el("h3", {}, r.name)),
        props([
          ["source", r.source],
          ["head", r.head.length ? el("code", {}, r.head.join(" \u2192 ")) : el("span", { class: "muted" }, "none")],
          ["output", el("code", {}, shape(r.output_shape))],
          r.cumulative && ["cumulative", "yes (summed over steps)"],
        ]),
      ];
    }
    return null;
  }

  function showDetails() {
    const box = $("details");
    const sel = hovered || pinned;
    const content = state && sel ? details(sel) : null;
    if (content) {
      box.replaceChildren(...content.filter(Boolean));
      box.dataset.kind = sel.kind;
      box.dataset.name = sel.name;
    } else {
      delete box.dataset.kind;
      delete box.dataset.name;
      box.replaceChildren(el("p", { class: "muted" }, state && state.picture_version === null
        ? "Details appear once the file is valid."
        : "Hover over an area or an edge; click to pin it."));
    }
  }

  // ------------------------------------------------------------ the whole page
  function setStatus(kind, text) {
    const s = $("status");
    s.className = `status ${kind}`;
    $("status-text").textContent = text;
  }

  function render(s) {
    state = s;
    document.title = `${s.name || s.file} \u2014 tnnspec view`;
    $("spec-name").textContent = s.name || "";
    $("file").textContent = s.file;

    const diags = s.diagnostics;
    const box = $("diagnostics");
    box.hidden = diags.length === 0;
    box.classList.toggle("warnings-only", s.errors === 0);
    const parts = [];
    if (s.errors) parts.push(`${s.errors} error${s.errors === 1 ? "" : "s"}`);
    if (s.warnings) parts.push(`${s.warnings} warning${s.warnings === 1 ? "" : "s"}`);
    $("diag-title").textContent = parts.join(", ");
    $("diag-list").replaceChildren(...diags.map((d) => el("li", { class: d.severity }, d.text)));

    if (s.valid) setStatus("live", `live \u00b7 v${s.version} \u00b7 updated ${s.updated}`);
    else setStatus("errors", `${parts[0]} \u00b7 v${s.version} \u00b7 updated ${s.updated}`);

    const stale = $("stale");
    stale.hidden = !s.stale;
    stale.textContent = s.stale
      ? `Stale: the file has errors \u2014 showing v${s.picture_version}, its last valid version`
      : "";

    showPictures(s);
    $("summary").textContent = s.summary || s.summary_error || "";
    $("plan").textContent = s.plan || "";
    for (const id of ["summary", "plan"]) $(id).classList.toggle("stale-text", !!s.stale);

    $("files").replaceChildren(...s.files.map((f) =>
      el("li", { class: s.missing.includes(f) ? "missing" : null }, f + (s.missing.includes(f) ? " (missing)" : ""))));

    if (pinned && !details(pinned)) pinned = null; // it went away
    if (hovered && !details(hovered)) hovered = null;
    highlight();
    showDetails();
  }

  let loading = false, again = false;
  async function load() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      do {
        again = false;
        const r = await fetch("/api/state", { cache: "no-store" });
        const s = await r.json();
        if (s.session !== session || s.version !== version) {
          session = s.session;
          version = s.version;
          render(s);
        }
      } while (again);
    } catch (err) {
      setStatus("offline", "cannot reach the server");
    } finally {
      loading = false;
    }
  }

  function connect() {
    if (!window.EventSource) { // long polling
      (async function poll() {
        for (;;) {
          try {
            const r = await fetch(`/api/state?since=${version}`, { cache: "no-store" });
            const s = await r.json();
            if (s.session !== session || s.version !== version) { session = s.session; version = s.version; render(s); }
          } catch (err) {
            setStatus("offline", "server stopped \u2014 retrying");
            await new Promise((ok) => setTimeout(ok, 2000));
          }
        }
      })();
      return;
    }
    const events = new EventSource("/events");
    events.addEventListener("version", () => load());
    events.onerror = () => setStatus("offline", "server stopped \u2014 retrying");
  }

  function selectView(view) {
    activeView = view;
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.view === view);
    for (const v of VIEWS) $(`canvas-${v}`).hidden = v !== view;
  }

  function init() {
    for (const v of VIEWS) {
      const host = $(`canvas-${v}`);
      zoomers[v] = new PanZoom(host);
      host.addEventListener("click", pick);
      host.addEventListener("pointermove", (e) => hover(e, v));
      host.addEventListener("pointerleave", () => { if (hovered) { hovered = null; highlight(); showDetails(); } });
    }
    for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => selectView(t.dataset.view));
    $("fit").addEventListener("click", () => zoomers[activeView].fit());
    $("zoom-in").addEventListener("click", () => zoomers[activeView].zoomCentre(1.25));
    $("zoom-out").addEventListener("click", () => zoomers[activeView].zoomCentre(0.8));
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "f" || e.key === "F") zoomers[activeView].fit();
      else if (e.key === "+" || e.key === "=") zoomers[activeView].zoomCentre(1.25);
      else if (e.key === "-") zoomers[activeView].zoomCentre(0.8);
      else if (e.key === "Escape") { pinned = null; highlight(); showDetails(); }
    });
    connect();
  }

  init();
})();
