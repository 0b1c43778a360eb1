// The attribution explorer (stepattr.explorer): renders the page's JSON data block.
// Vanilla JS, no network: every image is a data URI of the data block. The state (target,
// step, method) lives in the address's fragment, so a view can be linked or bookmarked.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("explorer-data").textContent);
  const G = D.grid.length;
  const SVG = "http://www.w3.org/2000/svg";
  const state = { target: 0, step: 0, method: 0 };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child !== null) node.append(child);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Images at whole multiples of their stored side, drawn nearest-neighbour (no blur): a 16 px
  // digit is a 96 px tile; an image larger than the room is shown at the room's size.
  const fit = (room) => (D.side <= room ? D.side * Math.floor(room / D.side) : room);
  for (const [name, room] of [["--tile", 96], ["--big", 128], ["--small", 64]]) {
    document.documentElement.style.setProperty(name, fit(room) + "px");
  }

  const fmtScore = (v) => (v === null ? "n/a" : (v >= 0 ? "+" : "\u2212") + Math.abs(v).toPrecision(3));
  const fmtStat = (v) => (v === null ? "n/a" : v.toFixed(3));
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const current = () => D.targets[state.target];
  const method = () => D.methods[state.method];

  // ------------------------------------------------------------------ controls
  const targetSelect = $("target");
  D.targets.forEach((t, i) => {
    let text = `${t.set} ${t.id}`;
    if (t.label) text += ` (${t.label})`;
    if (t.prompt) text += `: ${t.prompt}`;
    targetSelect.append(el("option", { value: i, "data-id": t.id, text }));
  });
  const methodSelect = $("method");
  D.methods.forEach((m, i) => {
    const extra = m.setting === null ? "" : ` (${m.setting})`;
    methodSelect.append(el("option", { value: i, "data-name": m.name, text: m.label + extra }));
  });
  const slider = $("step");
  slider.max = String(G - 1);
  const stepButtons = D.grid.map((t, g) => {
    const button = el("button", { type: "button", "data-index": g, title: `step t = ${t}`, text: t });
    button.addEventListener("click", () => set({ step: g }));
    $("step-buttons").append(button);
    return button;
  });
  targetSelect.addEventListener("change", () => set({ target: Number(targetSelect.value) }));
  methodSelect.addEventListener("change", () => set({ method: Number(methodSelect.value) }));
  slider.addEventListener("input", () => set({ step: Number(slider.value) }));
  $("prev-target").addEventListener("click", () => set({ target: state.target - 1 }));
  $("next-target").addEventListener("click", () => set({ target: state.target + 1 }));

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const tag = event.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") return; // native keys there
    const moves = {
      ArrowRight: { step: state.step + 1 },
      ArrowLeft: { step: state.step - 1 },
      Home: { step: 0 },
      End: { step: G - 1 },
      ArrowDown: { target: state.target + 1 },
      ArrowUp: { target: state.target - 1 },
      j: { target: state.target + 1 },
      k: { target: state.target - 1 },
      m: { method: (state.method + 1) % D.methods.length },
      M: { method: (state.method - 1 + D.methods.length) % D.methods.length },
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    set(moves[event.key]);
  });

  function set(change) {
    if ("target" in change) state.target = clamp(change.target, 0, D.targets.length - 1);
    if ("step" in change) state.step = clamp(change.step, 0, G - 1);
    if ("method" in change) state.method = clamp(change.method, 0, D.methods.length - 1);
    render();
  }

  // ------------------------------------------------------------------ address fragment
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const target = D.targets.findIndex((t) => String(t.id) === params.get("target"));
    const step = D.grid.findIndex((t) => String(t) === params.get("t"));
    const chosen = D.methods.findIndex((m) => m.name === params.get("method"));
    if (target >= 0) state.target = target;
    if (step >= 0) state.step = step;
    if (chosen >= 0) state.method = chosen;
  }

  function writeHash() {
    const hash = `#target=${current().id}&t=${D.grid[state.step]}&method=${method().name}`;
    if (location.hash === hash) return;
    try {
      history.replaceState(null, "", hash);
    } catch (err) {
      // some browsers refuse history changes on file:// pages; the view still works
    }
  }
  window.addEventListener("hashchange", () => {
    readHash();
    render();
  });

  // ------------------------------------------------------------------ rendering
  function trainTile(row, score, sign) {
    const info = D.train[String(row)];
    const caption = info.caption;
    const label = info.label === null ? "" : ` \u00b7 ${info.label}`;
    const tile = el("figure", { class: `tile ${sign}`, "data-row": row, title: caption ?? `#${row}${label} ${fmtScore(score)}` });
    tile.append(
      el("img", { src: info.img, alt: `training image #${row}`, "data-row": row }),
      el("figcaption", {},
        el("div", { class: "which", text: `#${row}${label}` }),
        el("div", { class: "score", text: fmtScore(score) }),
        caption === null ? null : el("div", { class: "caption", text: caption })),
    );
    return tile;
  }

  function renderTarget() {
    const t = current();
    const step = D.grid[state.step];
    let name = t.name;
    if (t.feature) name += ` \u2014 feature: ${t.feature}`;
    $("target-name").textContent = name;
    $("img-x0").src = t.x0;
    $("img-xt").src = t.x_t[state.step];
    $("img-xt").alt = `x_t at t = ${step}`;
    $("img-x0hat").src = t.x0hat[state.step];
    $("img-x0hat").alt = `x0hat at t = ${step}`;
    // validation targets are real test images: their attributed x0hat_t is x0 at every step
    $("cap-x0hat").innerHTML = "x&#770;<sub>0</sub>(x<sub>t</sub>)" + (t.set === "validation" ? " = x<sub>0</sub>" : "");
    $("cap-xt").innerHTML = `x<sub>t</sub>, t = ${step}`;
  }

  function renderInfluencers() {
    const m = method();
    const [posRows, posScores, negRows, negScores] = D.top[m.name][state.target][state.step];
    const section = $("influencers");
    section.dataset.method = m.name;
    section.dataset.target = current().id;
    section.dataset.step = D.grid[state.step];
    $("influencer-heading").textContent =
      `${m.label} at t = ${D.grid[state.step]}: top ${D.top_k} of ${D.n_train} training images`;
    $("positive").replaceChildren(...posRows.map((r, j) => trainTile(r, posScores[j], "pos")));
    $("negative").replaceChildren(...negRows.map((r, j) => trainTile(r, negScores[j], "neg")));
  }

  function renderCurve() {
    const t = current();
    const box = $("curve");
    if (!t.curve) {
      box.replaceChildren(el("p", { class: "note", text: "No feature curve for this target (the run has no feature transitions)." }));
      return;
    }
    const W = 420, H = 180, L = 38, R = 12, T = 32, B = 30;
    const tmax = Math.max(...D.grid), tmin = Math.min(...D.grid);
    const x = (s) => L + (tmax === tmin ? 0.5 : (tmax - s) / (tmax - tmin)) * (W - L - R);
    const y = (p) => T + (1 - p) * (H - T - B);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "feature curve" });
    const feature = t.feature === null ? "feature" : t.feature;
    chart.append(svg("text", { x: L, y: 13, "font-size": 12, "font-weight": 600 },
      `P(${feature} | x_t)` + (t.detector ? ` by the ${t.detector}, 95% CI` : "")));
    if (t.interval) {
      const x0 = x(t.interval.t_start), x1 = x(t.interval.t_end);
      chart.append(svg("rect", { x: Math.min(x0, x1), y: T, width: Math.abs(x1 - x0), height: H - T - B, fill: "#fff3b0" }));
    }
    for (const p of [0, 0.5, 1]) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#e3e6ea" }));
      chart.append(svg("text", { x: L - 6, y: y(p) + 4, "font-size": 10, "text-anchor": "end" }, p));
    }
    const lo = t.curve.ci_low, hi = t.curve.ci_high, p = t.curve.p;
    const band = D.grid.map((s, g) => `${x(s)},${y(hi[g] ?? 0)}`)
      .concat(D.grid.map((s, g) => `${x(s)},${y(lo[g] ?? 0)}`).reverse());
    chart.append(svg("polygon", { points: band.join(" "), fill: "#c8daf5", opacity: 0.8 }));
    chart.append(svg("polyline", { points: D.grid.map((s, g) => `${x(s)},${y(p[g] ?? 0)}`).join(" "), fill: "none", stroke: "#1f4e9c", "stroke-width": 2 }));
    const now = D.grid[state.step];
    chart.append(svg("line", { x1: x(now), x2: x(now), y1: T, y2: H - B, stroke: "#222", "stroke-dasharray": "3 3" }));
    D.grid.forEach((s, g) => {
      const mark = svg("circle", { cx: x(s), cy: y(p[g] ?? 0), r: g === state.step ? 5.5 : 3, fill: g === state.step ? "#222" : "#1f4e9c" });
      mark.append(svg("title", {}, `t = ${s}: P = ${fmtStat(p[g])} [${fmtStat(lo[g])}, ${fmtStat(hi[g])}]`));
      chart.append(mark);
      chart.append(svg("text", { x: x(s), y: H - B + 13, "font-size": 9, "text-anchor": "middle", "font-weight": g === state.step ? 700 : 400 }, s));
    });
    if (t.interval) {  // its label on top of the band and the curve
      const x0 = x(t.interval.t_start), x1 = x(t.interval.t_end);
      chart.append(svg("text", { x: (x0 + x1) / 2, y: T - 3, "font-size": 10, "text-anchor": "middle", fill: "#7a6400" },
        `transition ${t.interval.t_start}\u2192${t.interval.t_end}`));
    }
    chart.append(svg("text", { x: (L + W - R) / 2, y: H - 3, "font-size": 10, "text-anchor": "middle", fill: "#5f6368" },
      "denoising step t (sampling runs left to right)"));
    const note = el("p", { class: "note" });
    note.textContent = `At t = ${now}: P = ${fmtStat(p[state.step])} [${fmtStat(lo[state.step])}, ${fmtStat(hi[state.step])}]` +
      (t.interval ? `; steepest rise ${fmtStat(t.interval.rise)} between t = ${t.interval.t_start} and ${t.interval.t_end}` : "");
    box.replaceChildren(chart, note);
  }

  function ldsRows(name) {
    const bySet = D.lds[name];
    if (!bySet) return [];
    const step = String(D.grid[state.step]);
    const sets = [...new Set(["all", current().set])];
    return sets.filter((s) => bySet[s] && bySet[s][step]).map((s) => [s, bySet[s][step]]);
  }

  function renderLds() {
    const m = method();
    const box = $("lds");
    const step = D.grid[state.step];
    const table = el("table", {}, el("tr", {},
      el("th", { text: "" }), el("th", { text: "targets" }), el("th", { text: "LDS" }), el("th", { text: "95% CI" }), el("th", { text: "n" })));
    const add = (what, rows) => rows.forEach(([set, [lds, lo, hi, n]]) => table.append(el("tr", { "data-kind": what },
      el("td", { text: what }), el("td", { text: set }), el("td", { text: fmtStat(lds) }),
      el("td", { text: `[${fmtStat(lo)}, ${fmtStat(hi)}]` }), el("td", { text: n === null ? "" : n }))));
    const mine = ldsRows(m.name);
    const ceiling = ldsRows("ceiling");
    add(m.label, mine);
    add("ceiling", ceiling);
    const notes = [];
    if (!mine.length) notes.push(`${m.label} is not in the LDS table.`);
    if (D.lds.ceiling) notes.push("ceiling: the retraining ceiling, how well one training seed's f_t predicts another's across subsets. A reference, not a bound: methods are scored against the seeds' mean, and can exceed it (tables/lds.md, \u201cAgainst the noise bound\u201d).");
    else notes.push("No retraining ceiling in this run (it needs subsets.seeds \u2265 2).");
    box.replaceChildren(el("h3", { text: `Linear datamodeling score at t = ${step}` }), table,
      ...notes.map((text) => el("p", { class: "note", text })));
  }

  function renderPatches() {
    const box = $("patches");
    const P = D.patches;
    const heading = el("h2", { text: "Patch view" });
    if (!P) {
      box.replaceChildren(heading, el("p", { class: "patch-note", text: "This run has no patch scores (figures.patch_targets is empty)." }));
      return;
    }
    const t = current();
    const rows = P.targets[String(t.id)];
    if (!rows) {
      const jump = Object.keys(P.targets).map((id) => {
        const index = D.targets.findIndex((x) => String(x.id) === id);
        const button = el("button", { type: "button", text: `target ${id}` });
        button.addEventListener("click", () => set({ target: index }));
        return button;
      });
      box.replaceChildren(heading, el("p", { class: "patch-note", text: `Patch scores (${P.method}) exist for other targets at t = ${P.steps.join(", ")}: ` }, ...jump));
      return;
    }
    const column = P.steps.indexOf(D.grid[state.step]);
    if (column < 0) {
      const jump = P.steps.map((s) => {
        const button = el("button", { type: "button", text: `t = ${s}` });
        button.addEventListener("click", () => set({ step: D.grid.indexOf(s) }));
        return button;
      });
      box.replaceChildren(heading, el("p", { class: "patch-note", text: `Patch scores (${P.method}) of this target are at t = ${P.steps.join(", ")}: ` }, ...jump));
      return;
    }
    // one row per patch: x0hat_t with that patch outlined, then its top positive influencers
    const side = (box) => {
      const frame = el("div", { class: "patch-target" }, el("img", { src: t.x0hat[state.step], alt: "x0hat_t" }));
      if (box) {
        const [x0, y0, x1, y1] = box;
        frame.append(el("div", { class: "patch-box", style: `left:${100 * x0 / D.side}%;top:${100 * y0 / D.side}%;width:${100 * (x1 - x0) / D.side}%;height:${100 * (y1 - y0) / D.side}%` }));
      }
      return frame;
    };
    const list = el("div", { class: "patch-rows" });
    const row = (name, box, rowsAndScores) => {
      const [r, s] = rowsAndScores;
      list.append(el("div", { class: "row", "data-patch": name }, side(box),
        el("span", { class: "name", text: box ? `${name} [${box.join(", ")}]` : name }),
        ...r.map((index, j) => trainTile(index, s[j], "pos"))));
    };
    if (D.top[P.method]) row("whole image", null, D.top[P.method][state.target][state.step]);
    for (const patch of rows) row(patch.name, patch.box, patch.top[column]);
    box.replaceChildren(heading,
      el("p", { class: "patch-note", text: `Top ${D.top_k} positive influencers of f_t restricted to each patch (yellow box) of x\u0302\u2080(x_t) at t = ${D.grid[state.step]} (${P.method}, the mask on the residual, the same noises and lambda as the whole image).` }),
      list);
  }

  function syncControls() {
    targetSelect.value = String(state.target);
    methodSelect.value = String(state.method);
    slider.value = String(state.step);
    $("step-label").textContent = `t = ${D.grid[state.step]}`;
    stepButtons.forEach((b, g) => b.setAttribute("aria-pressed", String(g === state.step)));
    $("prev-target").disabled = state.target === 0;
    $("next-target").disabled = state.target === D.targets.length - 1;
    document.title = `${D.title}: target ${current().id}, t = ${D.grid[state.step]}, ${method().name}`;
  }

  function render() {
    renderTarget();
    renderInfluencers();
    renderCurve();
    renderLds();
    renderPatches();
    syncControls();
    writeHash();
    document.body.dataset.ready = "true";
  }

  readHash();
  render();
})();
