/* featcache report.html: sortable tables and the utterance browser. Inlined into the page; no network.
 * The browser's data files (browser/c<K>-s<S>.js) call featcacheBrowser.add(key, rows) and are loaded on
 * demand with <script> elements, which works from file:// without a server. */
"use strict";

/* ---------------------------------------------------------------------------------------------- tables */

function sortValue(cell) {
  const v = cell.getAttribute("data-v");
  if (v === null || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : v.toLowerCase();
}

function sortTable(table, col, th) {
  const state = th.getAttribute("aria-sort");
  const next = state === "ascending" ? "descending" : state === "descending" ? "none" : "ascending";
  for (const h of table.tHead.rows[0].cells) h.removeAttribute("aria-sort");
  if (next !== "none") th.setAttribute("aria-sort", next);
  const dir = next === "descending" ? -1 : 1;
  for (const body of table.tBodies) {
    const rows = Array.from(body.rows).filter((r) => !r.classList.contains("section"));
    rows.forEach((r, i) => { if (!r.dataset.order) r.dataset.order = String(i); });
    rows.sort((a, b) => {
      if (next === "none") return Number(a.dataset.order) - Number(b.dataset.order);
      const x = sortValue(a.cells[col]), y = sortValue(b.cells[col]);
      if (x === null && y === null) return Number(a.dataset.order) - Number(b.dataset.order);
      if (x === null) return 1;  /* empty cells last, whatever the direction */
      if (y === null) return -1;
      if (x < y) return -dir;
      if (x > y) return dir;
      return Number(a.dataset.order) - Number(b.dataset.order);
    });
    for (const r of rows) body.appendChild(r);
  }
}

for (const table of document.querySelectorAll("table.sortable")) {
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortTable(table, col, th));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortTable(table, col, th); });
  });
}

/* --------------------------------------------------------------------------------------------- browser */

const featcacheBrowser = (function () {
  const dataEl = document.getElementById("browser-data");
  const loaded = {};
  const waiting = {};
  if (!dataEl) return { add() {} };
  const M = JSON.parse(dataEl.textContent);
  const $ = (id) => document.getElementById(id);
  const el = { cond: $("b-cond"), session: $("b-session"), label: $("b-label"), fusion: $("b-fusion"),
               outcome: $("b-outcome"), search: $("b-search"), status: $("b-status"), table: $("b-table"),
               prev: $("b-prev"), next: $("b-next"), page: $("b-page") };
  let page = 0;
  let rows = [];
  let request = 0;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function option(select, value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  /* the changed words of a perturbed text, marked (word-level longest common subsequence) */
  function markChanges(clean, pert) {
    const a = clean.split(/(\s+)/), b = pert.split(/(\s+)/);
    const n = a.length, m = b.length;
    if (n * m > 250000) return esc(pert);
    const L = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    let i = 0, j = 0, out = "", gone = [];
    const flushGone = () => {
      const words = gone.join("").trim();
      if (words) out += '<del title="deleted">' + esc(words) + "</del> ";
      gone = [];
    };
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { flushGone(); out += esc(b[j]); i++; j++; }
      else if (i < n && (j >= m || L[i + 1][j] >= L[i][j + 1])) { gone.push(a[i]); i++; }  /* a word taken out */
      else if (/^\s+$/.test(b[j])) { out += b[j]; j++; }
      else {  /* a word put in: its tooltip names what it replaced */
        out += '<mark class="changed" title="' + esc(gone.join("").trim() || "inserted") + '">' + esc(b[j]) + "</mark>";
        gone = [];
        j++;
      }
    }
    flushGone();
    return out;
  }

  function condition() { return M.conditions[Number(el.cond.value)]; }

  function filesFor(cond) {
    const s = el.session.value;
    return Object.keys(cond.files).filter((k) => s === "" || k === s).map((k) => cond.files[k]);
  }

  function load(src) {
    if (loaded[src]) return Promise.resolve(loaded[src]);
    if (!waiting[src]) {
      waiting[src] = new Promise((resolve, reject) => {
        const tag = document.createElement("script");
        tag.src = src;
        tag.dataset.src = src;
        tag.onload = () => (loaded[src] ? resolve(loaded[src]) : reject(new Error(src + " holds no rows")));
        tag.onerror = () => reject(new Error("could not load " + src));
        document.head.appendChild(tag);
      });
    }
    return waiting[src];
  }

  function keyOf(src) { return src.replace(/^.*\//, "").replace(/\.js$/, ""); }

  function matches(row, cond) {
    const lab = el.label.value, outcome = el.outcome.value, q = el.search.value.trim().toLowerCase();
    if (lab !== "" && row[1] !== Number(lab)) return false;
    if (q && !(row[0].toLowerCase().includes(q) || (row[2] || "").toLowerCase().includes(q) ||
               (row[3] || "").toLowerCase().includes(q))) return false;
    if (outcome === "") return true;
    const f = row[4][Number(el.fusion.value)];
    if (!f) return false;
    const fusionRight = f[0] === row[1];
    if (outcome === "flip") return f[4] >= 0 && f[4] !== f[0];
    const uni = cond.unimodal.map((k) => row[4][k]).filter((x) => x);
    if (!uni.length) return false;
    const uniWrong = uni.some((u) => u[0] !== row[1]);
    return outcome === "fuw" ? fusionRight && uniWrong : !fusionRight && !uniWrong;
  }

  function predCell(p, label) {
    if (!p) return '<td class="pred muted">–</td>';
    const L = M.labels;
    const v = (x) => (x >= 10 ? "= " + (x / 100).toFixed(2) : "&lt; 0.1");
    let html = '<td class="pred ' + (p[0] === label ? "ok" : "wrong") + '"><strong>' + esc(L[p[0]]) + "</strong> " +
      v(p[1]) + '<span class="second">' + esc(L[p[2]]) + " " + v(p[3]) + "</span>";
    if (p[4] >= 0 && p[4] !== p[0]) html += '<span class="was">clean: ' + esc(L[p[4]]) + "</span>";
    return html + "</td>";
  }

  function audioCell(uid, cond) {
    const a = M.audio[uid];
    if (!a) return "<td></td>";
    let html = '<td><audio controls preload="none" src="' + esc(a.clean) + '" aria-label="clean"></audio>';
    const p = a.conditions[cond.name];
    if (p) html += '<br><audio controls preload="none" src="' + esc(p) + '" aria-label="' + esc(cond.name) + '"></audio>';
    return html + "</td>";
  }

  function render() {
    const cond = condition();
    const size = M.pageSize;
    const pages = Math.max(1, Math.ceil(rows.length / size));
    page = Math.min(page, pages - 1);
    const slice = rows.slice(page * size, (page + 1) * size);
    const head = "<tr><th>Utterance</th><th>Text (" + esc(cond.name) + ")</th>" +
      M.models.map((m) => "<th>" + esc(m) + "</th>").join("") + "<th>Audio</th></tr>";
    el.table.tHead.innerHTML = head;
    el.table.tBodies[0].innerHTML = slice.map((r) => {
      const clean = r[2] === null ? '<span class="muted">(no transcription)</span>' : esc(r[2]);
      const text = r[3] === null ? clean : clean + '<br><span class="muted">→</span> ' + markChanges(r[2] || "", r[3]);
      return "<tr><td><strong>" + esc(M.labels[r[1]]) + '</strong><span class="id">' + esc(r[0]) + "</span></td>" +
        '<td class="text">' + text + "</td>" + M.models.map((_, k) => predCell(r[4][k], r[1])).join("") +
        audioCell(r[0], cond) + "</tr>";
    }).join("");
    el.page.textContent = "page " + (page + 1) + " of " + pages;
    el.prev.disabled = page === 0;
    el.next.disabled = page >= pages - 1;
    el.status.textContent = rows.length + " of " + total(cond) + " utterances under " + cond.name +
      (el.session.value ? " in " + (M.fold || "session") + " " + el.session.value : "") + "; seed " + M.seed + ".";
  }

  function total(cond) {
    const s = el.session.value;
    return Object.keys(cond.n).filter((k) => s === "" || k === s).reduce((t, k) => t + cond.n[k], 0);
  }

  function refresh(resetPage) {
    const mine = ++request;
    const cond = condition();
    el.status.textContent = "loading…";
    Promise.all(filesFor(cond).map(load)).then((parts) => {
      if (mine !== request) return;
      rows = [].concat(...parts).filter((r) => matches(r, cond));
      if (resetPage) page = 0;
      render();
    }).catch((err) => {
      el.status.textContent = String(err.message || err);
      console.error("featcache browser: " + (err.message || err));
    });
  }

  M.conditions.forEach((c, k) => option(el.cond, String(k), c.name));
  option(el.session, "", "all");
  if (M.fold) el.session.parentElement.firstChild.textContent = M.fold[0].toUpperCase() + M.fold.slice(1) + " ";
  M.sessions.forEach((s) => option(el.session, s, s));
  option(el.label, "", "all");
  M.labels.forEach((l, k) => option(el.label, String(k), l));
  M.fusion.forEach((k) => option(el.fusion, String(k), M.models[k]));
  if (!M.fusion.length) { el.fusion.disabled = true; el.outcome.disabled = true; }
  const firstAttack = M.conditions.findIndex((c) => c.name !== M.clean);
  el.cond.value = String(firstAttack >= 0 ? firstAttack : 0);
  for (const s of [el.cond, el.session, el.label, el.fusion, el.outcome]) s.addEventListener("change", () => refresh(true));
  el.search.addEventListener("input", () => refresh(true));
  el.prev.addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
  el.next.addEventListener("click", () => { page += 1; render(); });

  const api = {
    add(key, data) { for (const c of M.conditions) for (const f of Object.values(c.files)) if (keyOf(f) === key) loaded[f] = data; },
    refresh, rows: () => rows, manifest: M,
  };
  window.featcacheBrowser = api;
  if (M.conditions.length) setTimeout(() => refresh(true), 0);
  return api;
})();
