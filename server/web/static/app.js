// WarmWindow dashboard: hash-routed pages over the JSON API, live over server-sent events.
// Every value from the API reaches the page as text (text nodes, attribute values,
// CSSOM properties): nothing here parses HTML, and the Content-Security-Policy forbids
// inline script and inline style attributes anyway.
"use strict";

const S = {
  lang: localStorage.getItem("ww-lang") || "zh",
  me: null,
  meta: null, // GET /api/meta: the server's time zone and rating scale
  units: [],
  site: null,
  period: null, // YYYY-MM, YYYY-Qn or YYYY: the month picked, its quarter or its year
  month: null, // YYYY-MM: the month picked (verdicts and the report are a month's)
  periodKind: localStorage.getItem("ww-period-kind") || "month",
  hall: new Map(),
  charts: [],
  refreshTimer: null,
};
const T = () => window.I18N[S.lang];
// Pages kept in their own files (static/pages/*.js, loaded before this one) register
// here by route name: WW_PAGES.cases = async (root, route) => { ... }. They call this
// file's helpers (h, api, T, ...) when they render, and add their labels to I18N.
const PAGES = window.WW_PAGES || {};
const $ = (sel, root = document) => root.querySelector(sel);
// Links the page builds: in-page routes and same-origin paths only, never a scheme.
const safeHref = (v) => (/^(#|\/(?!\/))/.test(String(v)) ? String(v) : "#");
const h = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) { if (typeof v === "function") el.addEventListener(k.slice(2), v); }
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed under style-src 'self'
    else if (k === "href" || k === "src" || k === "action") el.setAttribute(k, safeHref(v));
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
  return el;
};
// A query string from an object (values encoded; undefined and null left out).
const qs = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)).toString();
const enc = encodeURIComponent;

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.method && opts.method !== "GET") {
    headers["X-CSRF-Token"] = S.me?.csrf || "";
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  if (!r.ok) {
    let msg = await r.text();
    try { const d = JSON.parse(msg).detail; msg = typeof d === "string" ? d : JSON.stringify(d); } catch { /* not JSON */ }
    throw new Error(`${r.status} ${msg}`);
  }
  return r.json();
}

const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(0)}%`);
// Local days and clock times are the server's (its configured time zone), not the browser's.
const tz = () => S.meta.timezone;
// A bad review is what the server's rating scale says is one.
const isBadRating = (code) => S.meta.ratings.some((r) => r.code === code && r.bad);
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString(S.lang === "zh" ? "zh-CN" : "en-GB", { timeZone: tz() }) : "—");
const fmtDateTime = (ms) => (ms ? new Date(ms).toLocaleString(S.lang === "zh" ? "zh-CN" : "en-GB", { timeZone: tz() }) : "—");
const secs = (ms) => (ms === null || ms === undefined ? "" : `+${(ms / 1000).toFixed(1)}s`);
const localMonth = () => new Date().toLocaleDateString("sv-SE", { timeZone: tz() }).slice(0, 7);
const localDay = () => new Date().toLocaleDateString("sv-SE", { timeZone: tz() });

function exportLinks(name, extra = "", period = S.period) {
  const q = qs({ period, site: S.site }) + extra;
  return h("span", { class: "exports" },
    h("a", { class: "export", href: `/api/export/${name}.csv?${q}`, dataset: { name, fmt: "csv" } }, "CSV"),
    h("a", { class: "export", href: `/api/export/${name}.xlsx?${q}`, dataset: { name, fmt: "xlsx" } }, "XLSX"));
}

function destroyCharts() { for (const c of S.charts) c.destroy(); S.charts = []; }

// Phones (style.css, "Phones"): a table marked here stacks each row into "label: value"
// lines, the labels its header's; at a desk it stays a table.
const PHONE = "(max-width: 700px)";
const isPhone = () => window.matchMedia(PHONE).matches;
function stacked(table) {
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  table.classList.add("stack");
  for (const tr of table.querySelectorAll("tbody tr")) {
    [...tr.children].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
  }
  return table;
}
// A chart's width to height: taller on a phone, where the width is a third of a desk's.
const chartRatio = (desk, phone) => (isPhone() ? phone : desk);
const minutes = (ms) => `${Math.round(ms / 60000)} ${T().minutes}`;

// ------------------------------------------------------------------ live hall

function tile(w) {
  const st = w.state || {};
  const posture = !w.state ? "" : !st.present ? T().away : st.standing ? T().standing : T().seated;
  const chips = [];
  if (w.state) {
    chips.push(h("span", { class: st.present ? "" : "warn" }, posture));
    chips.push(h("span", {}, st.in_session ? T().inSession : T().idle));
    if (st.sign_up) chips.push(h("span", { class: "warn" }, T().sign));
    chips.push(h("span", {}, T()[st.perception] || st.perception));
  }
  return h("div", {
      class: `tile ${w.online ? "online" : "offline"}`,
      id: `tile-${w.site}-${w.window}`,
      dataset: {
        online: w.online ? "1" : "0", standing: st.standing ? "1" : "0",
        present: st.present ? "1" : "0", inSession: st.in_session ? "1" : "0", sign: st.sign_up ? "1" : "0",
      },
      onclick: () => { location.hash = `#/window/${enc(w.site)}/${enc(w.window)}`; },
    },
    h("div", { class: "row" }, h("span", { class: "label" }, w.label), h("span", {}, w.online ? T().online : T().offline)),
    h("div", { class: "row" }, h("span", {}, `${T().clerk}: ${w.clerk_id || T().noClerk}`)),
    h("div", { class: "chips" }, chips),
    h("div", { class: "row" },
      h("span", {}, `${T().today} ${w.sessions_today} ${T().sessions}`),
      h("span", {}, `${T().stand} ${pct(w.stand_rate_today)}`)),
    h("div", { class: "row" },
      h("span", {}, `${T().smile} ${pct(w.smile_rate_today)}`),
      h("span", {}, `${T().good} ${pct(w.good_rate_today)}`)),
    h("div", { class: "row" }, h("span", { class: "seen" }, `${T().lastSeen} ${fmtTime(w.last_seen_ms || w.availability_ms)}`)));
}

function renderTile(key, flash = false) {
  const w = S.hall.get(key);
  const old = document.getElementById(`tile-${w.site}-${w.window}`);
  if (!old) return;
  const fresh = tile(w);
  old.replaceWith(fresh);
  if (flash) fresh.classList.add("flash");
}

async function viewHall(root) {
  const tiles = await api(`/api/hall/${enc(S.site)}`);
  S.hall = new Map(tiles.map((w) => [`${w.site}/${w.window}`, w]));
  const events = await api(`/api/events?${qs({ limit: 30, site: S.site })}`);
  root.append(
    h("section", { class: "card" }, h("h2", {}, T().navHall), h("div", { class: "tiles", id: "tiles" }, tiles.map(tile))),
    h("section", { class: "card" }, h("h2", {}, T().latest), h("table", { id: "latest" }, h("tbody", {}, events.map(eventRow)))));
}

// Not observed (contract v3): the camera could not see; a grey chip, never a failure.
const unseenChip = () => h("span", { class: "chip unobserved", title: T().notObservedWhy }, T().notObserved);
// A summary's verdict: done, missed, or not observed (contract v3: its False means nothing).
const mark = (p, verdict) => ((p.not_observed || []).includes(verdict) && !p[verdict] ? unseenChip() : p[verdict] ? "✓" : "✗");
const faultName = (code) => T().faults[code] || code;

function eventRow(e) {
  const p = e.payload || e;
  const bad = (p.kind === "evaluated" && isBadRating(p.rating)) || (p.kind === "away" && p.violation);
  const suspect = p.suspect ? ` (${T().suspect}: ${T().suspectWhy[p.suspect_reason] || p.suspect_reason})` : "";
  const detail = p.kind === "evaluated" ? [T().rating[p.rating] || p.rating, suspect]
    : p.kind === "stood_up" || p.kind === "smiled" ? [`${T().phase[p.phase] || p.phase} `, p.not_observed ? unseenChip() : p.on_time ? "✓" : "✗", ` ${secs(p.after_ms)}`]
    : p.kind === "session_summary" ? [`${T().stand} `, mark(p, "stood_on_call"), ` ${T().smile} `, mark(p, "smiled_at_greeting"), " ",
      ...(p.greeted_first != null ? [`${T().greetedFirst} `, mark(p, "greeted_first")] : [`${T().farewell} `, mark(p, "stood_at_farewell")])]
    : p.kind === "away" ? `${p.with_sign ? T().sign : `✗ ${T().k.away_without_sign}`}${p.ended_ms ? ` · ${minutes(p.ended_ms - p.started_ms)}` : ""}`
    : p.kind === "sign_while_present" ? minutes(p.duration_ms)
    : p.kind === "fault" ? `${faultName(p.code)} ${p.detail || ""}${p.cleared ? " ✓" : ""}` : "";
  // the standard's clauses by name (their ids, as the standard numbers them, on hover)
  const clauses = (p.clauses || []).map((c) => h("span", { class: "clause", title: c }, T().clauseNames[c] || c));
  return h("tr", { class: bad ? "bad" : "", dataset: { kind: p.kind } }, h("td", { class: "ev-time" }, fmtTime(p.ts_ms)),
    h("td", { class: "ev-window" }, p.window), h("td", { class: "ev-kind" }, T().ev[p.kind] || p.kind),
    h("td", { class: "ev-detail" }, detail), h("td", { class: "ev-clauses" }, clauses.flatMap((c, i) => (i ? [" ", c] : [c]))));
}

// Called for every live message while any page is open.
function onLive(msg) {
  const route = location.hash || "#/hall";
  if (msg.type === "state") {
    const s = msg.state; const key = `${s.site}/${s.window}`; const w = S.hall.get(key);
    if (w) { w.state = s; w.last_seen_ms = Date.now(); renderTile(key, true); }
  } else if (msg.type === "availability") {
    const key = `${msg.site}/${msg.window}`; const w = S.hall.get(key);
    if (w) { w.online = msg.online; w.availability_ms = Date.now(); renderTile(key, true); }
  } else if (msg.type === "event") {
    const e = msg.event; const key = `${e.site}/${e.window}`; const w = S.hall.get(key);
    if (w) { w.last_seen_ms = Date.now(); renderTile(key, true); }
    const tbody = $("#latest tbody");
    if (tbody && e.site === S.site) { tbody.prepend(eventRow(e)); while (tbody.children.length > 30) tbody.lastChild.remove(); }
    // today's figures and alert lists change with summaries, evaluations and absences
    if (["session_summary", "evaluated", "away", "fault", "sign_while_present"].includes(e.kind)) scheduleRefresh(route);
  } else if (msg.type === "alert") {
    scheduleRefresh(route);  // raised by the clock (overdue cases, silent terminals)
  }
}

function scheduleRefresh(route) {
  clearTimeout(S.refreshTimer);
  S.refreshTimer = setTimeout(async () => {
    if (route.startsWith("#/hall") && (location.hash || "#/hall").startsWith("#/hall")) {
      for (const w of await api(`/api/hall/${enc(S.site)}`)) {
        const key = `${w.site}/${w.window}`; const old = S.hall.get(key);
        if (old) { Object.assign(old, { sessions_today: w.sessions_today, stand_rate_today: w.stand_rate_today, smile_rate_today: w.smile_rate_today, good_rate_today: w.good_rate_today, clerk_id: w.clerk_id }); renderTile(key); }
      }
    } else if (route.startsWith("#/alerts")) { render(); }
  }, 400);
}

// ------------------------------------------------------------------ alerts

async function viewAlerts(root) {
  const rows = await api(`/api/alerts?${qs({ site: S.site, limit: 300 })}`);
  const canAck = S.me.can.acknowledge;
  const table = h("table", { id: "alerts" },
    h("thead", {}, h("tr", {}, [T().time, T().window, T().kind, T().detail, T().status].map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((a) => {
      const d = a.detail;
      const detail = a.kind === "away_without_sign" ? `${fmtTime(d.started_ms)} – ${fmtTime(d.ended_ms)}`
        : a.kind === "bad_review" ? T().rating[d.rating] : a.kind === "conduct" ? (d.misses || []).map((m) => T().miss[m] || m).join("、")
        : a.kind === "fault" ? `${faultName(d.code)} ${d.detail || ""}`
        : a.kind === "sign_while_present" ? minutes(d.duration_ms)
        : a.kind === "case_overdue" ? `${T().due} ${fmtDateTime(d.due_ms)}${d.rating ? ` · ${T().rating[d.rating] || d.rating}` : ""}${d.clerk_id ? ` · ${d.clerk_id}` : ""}`
        : a.kind === "terminal_silent" ? `${T().lastHeard} ${fmtDateTime(d.last_heard_ms)}`
        : a.kind === "not_observed" ? `${T().cameraView}: ${d.not_observed} / ${d.sessions} ${T().sessionsNotObserved}` : "";
      let status;
      if (a.acked_ms) status = h("span", { class: "ok" }, `${T().acked}: ${a.acked_by} · ${a.note}`);
      else if (!canAck) status = h("span", { title: T().readonly }, T().open);
      else {
        const note = h("input", { class: "note", placeholder: T().note, "aria-label": T().note });
        status = h("span", { class: "ack" }, note, h("button", {
          class: "ack-btn", type: "button", onclick: async () => {
            if (!note.value.trim()) { note.focus(); return; }
            await api(`/api/alerts/${encodeURIComponent(a.alert_id)}/ack`, { method: "POST", body: JSON.stringify({ note: note.value }) });
            render();
          } }, T().ack));
      }
      return h("tr", { class: a.acked_ms ? "" : "bad", dataset: { alert: a.alert_id, kind: a.kind } },
        h("td", {}, fmtDateTime(a.ts_ms)), h("td", {}, a.window), h("td", {}, T().k[a.kind] || a.kind), h("td", {}, detail), h("td", { class: "wide" }, status));
    })));
  root.append(h("section", { class: "card" }, h("h2", {}, T().alerts, exportLinks("alerts")), stacked(table)));
}

// ------------------------------------------------------------------ window and clerk pages

async function viewDetail(root, scopeQuery, title) {
  const [m, trend, heat, tl] = await Promise.all([
    api(`/api/measures?${qs({ period: S.period, ...scopeQuery })}`),
    api(`/api/trend?${qs({ period: S.period, ...scopeQuery })}`),
    api(`/api/heatmap?${qs({ period: S.period, ...scopeQuery })}`),
    api(`/api/timeline?${qs({ period: S.period, ...scopeQuery })}`),
  ]);
  const g = m.groups.all;
  // a rate with the sessions its verdict could not be seen in beside it (not in the rate)
  const kpi = (label, value, unseen) => h("div", { class: "kpi" }, label, h("b", {}, value),
    unseen ? h("span", { class: "unobserved", title: T().notObservedWhy }, `${unseen} ${T().notObserved}`) : null);
  root.append(h("section", { class: "card" }, h("h2", {}, title),
    h("div", { class: "kpis", id: "kpis" },
      kpi(T().sessions, g.sessions), kpi(T().stand, pct(g.stand_on_call_rate), g.stand_on_call_not_observed),
      kpi(T().smile, pct(g.smile_at_greeting_rate), g.smile_at_greeting_not_observed),
      kpi(T().farewell, pct(g.farewell_stand_rate), g.farewell_stand_not_observed), kpi(T().seeOff, pct(g.see_off_rate)), kpi(T().coverage, pct(g.evaluation_coverage)),
      kpi(T().good, pct(g.good_review_rate)), kpi(T().k.away_without_sign, `${g.away_without_sign_min} ${T().minutes}`),
      kpi(T().farewellSmile, pct(g.farewell_smile_rate), g.farewell_smile_not_observed),
      kpi(T().notObservedSessions, `${g.not_observed_sessions} · ${pct(g.not_observed_share)}`),
      g.receptions ? kpi(T().greetedFirst, `${pct(g.greeted_first_rate)} / ${g.receptions}`) : null,
      kpi(T().priority, `${g.priority_sessions} · ${pct(g.priority_share)}`),
      kpi(T().priorityOwn, pct(g.priority_own_session_rate)))));

  const trendCanvas = h("canvas", { id: "trend-chart", height: 220 });
  const distCanvas = h("canvas", { id: "dist-chart", height: 220 });
  root.append(h("div", { class: "grid2" },
    h("section", { class: "card" }, h("h2", {}, T().trend), h("div", { class: "chart" }, trendCanvas)),
    h("section", { class: "card" }, h("h2", {}, T().distribution), h("div", { class: "chart" }, distCanvas))));
  S.charts.push(new Chart(trendCanvas, {
    type: "line",
    data: { labels: trend.map((d) => d.day.slice(5)), datasets: [
      { label: T().stand, data: trend.map((d) => d.stand_rate), borderColor: "#2e7d4f", spanGaps: true },
      { label: T().smile, data: trend.map((d) => d.smile_rate), borderColor: "#b8322a", spanGaps: true },
      { label: T().farewell, data: trend.map((d) => d.farewell_rate), borderColor: "#1f5fa8", spanGaps: true },
      { label: T().good, data: trend.map((d) => d.good_rate), borderColor: "#c98a00", spanGaps: true },
    ] },
    options: { animation: false, aspectRatio: chartRatio(300 / 220, 1.1), scales: { y: { min: 0, max: 1, ticks: { callback: (v) => `${v * 100}%` } } } },
  }));
  const levels = S.meta.ratings.map((r) => r.code); // the scale, best first
  S.charts.push(new Chart(distCanvas, {
    type: "bar",
    data: { labels: levels.map((l) => T().rating[l]), datasets: [{ label: T().sessions, data: levels.map((l) => g.ratings[l] || 0),
      backgroundColor: ["#2e7d4f", "#6aa84f", "#c9b400", "#e06c00", "#b00020"] }] },
    options: { animation: false, aspectRatio: chartRatio(300 / 220, 1.3), plugins: { legend: { display: false } } },
  }));

  // heat map: weekday rows x 24 hours, colour = compliance, text = sessions
  const cells = new Map(heat.map((c) => [`${c.weekday}-${c.hour}`, c]));
  const grid = h("div", { class: "heat", id: "heatmap" }, h("div", {}, ""), [...Array(24).keys()].map((hr) => h("div", {}, hr)));
  for (let wd = 1; wd <= 7; wd++) {
    grid.append(h("div", {}, T().weekday[wd - 1]));
    for (let hr = 0; hr < 24; hr++) {
      const c = cells.get(`${wd}-${hr}`);
      const hue = c && c.compliance !== null ? Math.round(c.compliance * 120) : null;
      grid.append(h("div", { style: { background: hue === null ? "#f1f1f1" : `hsl(${hue} 60% 75%)` }, title: c ? `${c.sessions} · ${pct(c.compliance)}` : "" }, c ? c.sessions : ""));
    }
  }
  root.append(h("section", { class: "card" }, h("h2", {}, T().heatmap), grid));

  const items = tl.slice(-200).reverse().map((s) => {
    const parts = s.steps.map((st) => {
      // not observed: the camera could not see; grey, never a failure (contract v3)
      const result = (ok, text) => (st.not_observed ? T().notObserved : ok ? text : "✗");
      const farewellSmile = st.smile_not_observed ? ` · ${T().smile} ${T().notObserved}`
        : st.smiled === true ? " · " + T().smiled : st.smiled === false ? " (" + T().noSmile + ")" : "";
      const label = st.step === "call" ? `${T().call} ${fmtTime(st.at_ms)}`
        : st.step === "stood" ? `${T().stood} ${result(st.ok, secs(st.after_ms))}`
        : st.step === "smiled" ? `${T().smiled} ${result(st.ok, secs(st.after_ms))}${st.too_broad ? " (" + T().tooBroad + ")" : ""}`
        : st.step === "evaluated" ? `${T().evaluated} ${st.rating ? T().rating[st.rating] : "✗"}`
        : `${T().farewellStep} ${result(st.ok, "✓ " + secs(st.see_off_ms))}${farewellSmile}`;
      const cls = st.not_observed ? "unobserved" : st.ok === false ? "bad" : "";
      return h("span", { class: `step ${cls}`, title: st.not_observed ? T().notObservedWhy : undefined,
        dataset: { step: st.step, observed: st.not_observed ? "0" : "1" } }, label);
    });
    const steps = parts.flatMap((p, i) => (i ? [" → ", p] : [p]));
    // what the call brought: ticket, matter, priority category, case number
    const call = [s.ticket && `${T().ticket} ${s.ticket}`, s.matter_name || s.matter_code,
      s.priority_category && `${T().priority}: ${T().categories[s.priority_category] || s.priority_category}`,
      s.case_number && `${T().caseNumber} ${s.case_number}`,
      s.greeted_first === false && !s.not_observed.greeted_first && T().notGreetedFirst].filter(Boolean);
    return h("li", { dataset: { session: s.session_id } },
      call.length ? h("span", { class: `call-info ${s.priority_category ? "priority" : ""}` }, `${call.join(" · ")} | `) : "", steps,
      s.observed_share != null ? h("span", { class: "seen-share", title: T().observedShareWhy }, ` · ${T().observedShare} ${pct(s.observed_share)}`) : "",
      h("span", { class: "video" }, ` · ${T().video} ${fmtDateTime(s.opened_ms)}`));
  });
  root.append(h("section", { class: "card" }, h("h2", {}, T().timeline, exportLinks("sessions")), h("ul", { class: "timeline", id: "timeline" }, items)));
}

async function windowTitle(site, window) {
  const w = (await api(`/api/windows?${qs({ site })}`)).find((x) => x.window === window);
  const unit = S.units.find((u) => u.site === site);
  return `${unit ? unit.name : site} · ${w ? w.label : window}`;
}

async function clerkTitle(clerkId) {
  const c = (await api(`/api/clerks?${qs({ site: S.site })}`)).find((x) => x.clerk_id === clerkId);
  return c ? `${c.name} (${clerkId})` : clerkId;
}

// ------------------------------------------------------------------ assessment, units, fleet

async function viewAssessment(root) {
  const [verdicts, ranking, cases] = await Promise.all([
    api(`/api/assessments?${qs({ month: S.month, site: S.site })}`),
    api(`/api/ranking?${qs({ period: S.period, site: S.site })}`),
    api(`/api/cases?${qs({ site: S.site })}`),
  ]);
  root.append(h("section", { class: "card" },
    h("h2", {}, T().verdicts, S.period === S.month ? "" : ` ${S.month}`, exportLinks("assessment", "", S.month), h("a", { href: `/report/${enc(S.site)}/${enc(S.month)}`, target: "_blank", rel: "noopener", id: "report-link" }, T().report)),
    stacked(h("table", { id: "verdicts" }, h("thead", {}, h("tr", {}, ["", T().result, T().signOffTitle, T().failed, T().notJudged, T().probation, T().sessions, T().notObservedSessions, T().findings, T().openAppeals].map((x) => h("th", {}, x)))),
      h("tbody", {}, verdicts.map((v) => h("tr", { class: v.result === "fail" ? "bad" : "", dataset: { clerk: v.clerk_id } },
        h("td", {}, h("a", { href: `#/verdict/${enc(v.clerk_id)}/${enc(S.month)}` }, `${v.name} (${v.clerk_id})`)),
        h("td", {}, T()[v.result] || v.result, v.computed_result !== v.result ? ` (${T().computed}: ${T()[v.computed_result] || v.computed_result})` : ""),
        h("td", { class: v.sign_off === "provisional" ? "unobserved" : "" }, T().signOff[v.sign_off]),
        h("td", {}, v.failures.map((f) => `${T().crit[f.criterion] || f.criterion} ${typeof f.value === "number" && f.value <= 1 ? pct(f.value) : f.value} (${f.evidence.length})`).join("; ")),
        h("td", { class: "unobserved", title: T().notJudgedWhy }, v.criteria.filter((c) => c.status === "insufficient_observed_sessions")
          .map((c) => `${T().crit[c.criterion] || c.criterion} (${c.observed_sessions}/${v.measures.sessions})`).join("; ")),
        h("td", {}, T().probationStates[v.probation] || v.probation,
          v.probation_decided ? ` · ${T().decided}: ${v.probation_decided.month}${v.probation_decided.outcome ? ` ${T().probationOutcome[v.probation_decided.outcome]}` : ""}` : ""),
        h("td", {}, v.measures.sessions),
        h("td", {}, v.measures.not_observed_sessions), h("td", {}, v.findings || ""), h("td", {}, v.open_appeals || ""))))))));
  root.append(h("section", { class: "card" }, h("h2", {}, T().ranking, exportLinks("ranking")),
    stacked(h("table", { id: "ranking" }, h("thead", {}, h("tr", {}, [T().rank, "", T().sessions, T().score, T().notObservedLeftOut].map((x) => h("th", {}, x)))),
      h("tbody", {}, ranking.map((r) => h("tr", {}, h("td", {}, r.rank ?? "—"), h("td", {}, r.clerk_id), h("td", {}, `${r.exemplary}/${r.sessions}`), h("td", {}, r.score.toFixed(3)),
        h("td", { class: "unobserved" }, r.not_observed || ""))))))));
  root.append(h("section", { class: "card" }, h("h2", {}, T().cases, exportLinks("cases")),
    stacked(h("table", { id: "cases" }, h("thead", {}, h("tr", {}, [T().day, T().window, T().detail, T().due, T().daysLeft, T().status, T().note].map((x) => h("th", {}, x)))),
      h("tbody", {}, cases.map((c) => h("tr", { class: c.overdue ? "bad" : "", dataset: { case: c.case_id } },
        h("td", {}, fmtDateTime(c.opened_ms)), h("td", {}, c.window), h("td", {}, T().rating[c.rating] || c.rating),
        h("td", {}, fmtDateTime(c.due_ms), c.due_provisional ? h("span", { class: "warn", title: T().provisionalWhy }, ` ⚠ ${T().provisional}`) : ""),
        // official working days (server/policy/casework.py), not calendar days
        h("td", {}, c.working_days_left === null ? "—" : c.working_days_left > 0 ? T().cw.daysLeft(c.working_days_left)
          : c.working_days_left === 0 ? T().cw.dueToday : T().cw.overdueBy(-c.working_days_left)),
        h("td", {}, T().cw[c.status] || c.status),
        h("td", { class: "case-note" }, c.note || "", " ", h("a", { class: "case-link", href: `#/cases/${enc(c.case_id)}` }, S.me.can.close_case && c.status === "open" ? T().cw.handle : T().cw.view)))))))));
}

async function viewUnits(root) {
  const data = await api(`/api/units/compare?${qs({ period: S.period, by: "site" })}`);
  const names = new Map(S.units.map((u) => [u.site, u.name]));
  const districts = new Map(S.units.map((u) => [u.site, u.district]));
  const keys = Object.keys(data.groups).sort();
  const canvas = h("canvas", { id: "units-chart", height: 120 });
  root.append(h("section", { class: "card" }, h("h2", {}, T().units), h("div", { class: "chart" }, canvas),
    stacked(h("table", { id: "units" }, h("thead", {}, h("tr", {}, [T().unit, T().district, T().sessions, T().stand, T().smile, T().farewell, T().coverage, T().good, T().notObservedSessions].map((x) => h("th", {}, x)))),
      h("tbody", {}, keys.map((k) => { const g = data.groups[k]; return h("tr", {}, h("td", {}, names.get(k) || k), h("td", {}, districts.get(k) || ""), h("td", {}, g.sessions),
        h("td", {}, pct(g.stand_on_call_rate)), h("td", {}, pct(g.smile_at_greeting_rate)), h("td", {}, pct(g.farewell_stand_rate)),
        h("td", {}, pct(g.evaluation_coverage)), h("td", {}, pct(g.good_review_rate)), h("td", {}, `${g.not_observed_sessions} · ${pct(g.not_observed_share)}`)); }))))));
  S.charts.push(new Chart(canvas, { type: "bar", options: { animation: false, aspectRatio: chartRatio(300 / 120, 1.2), scales: { y: { min: 0, max: 1 } } },
    data: { labels: keys.map((k) => names.get(k) || k), datasets: [
      { label: T().stand, data: keys.map((k) => data.groups[k].stand_on_call_rate), backgroundColor: "#2e7d4f" },
      { label: T().smile, data: keys.map((k) => data.groups[k].smile_at_greeting_rate), backgroundColor: "#b8322a" },
      { label: T().good, data: keys.map((k) => data.groups[k].good_review_rate), backgroundColor: "#c98a00" } ] } }));
}

async function viewFleet(root) {
  const rows = await api("/api/fleet");
  root.append(h("section", { class: "card" }, h("h2", {}, T().fleet, exportLinks("fleet")),
    stacked(h("table", { id: "fleet" }, h("thead", {}, h("tr", {}, [T().window, T().status, T().lastSeen, T().fps, T().infer, T().temp, T().outbox, T().model, T().config, T().ws.col, T().uptime].map((x) => h("th", {}, x)))),
      h("tbody", {}, rows.map((d) => h("tr", { class: [d.online ? "" : "bad", d.settings_error ? "settings-error" : ""].join(" ").trim(), dataset: { site: d.site, window: d.window } },
        h("td", {}, `${d.site_name} ${d.label}`), h("td", {}, d.online ? T().online : T().offline), h("td", {}, fmtDateTime(d.last_seen_ms)),
        h("td", {}, d.fps ?? "—"), h("td", {}, d.inference_ms ?? "—"), h("td", {}, d.cpu_temp_c ?? "—"),
        h("td", {}, d.outbox_depth ?? "—"), h("td", {}, d.model_version ?? "—"), h("td", {}, d.config_version ?? "—"),
        h("td", { class: "fleet-settings" }, d.settings_serial ?? "—",
          d.settings_error ? h("span", { class: "bad ws-err" }, `${T().ws.refusedShort}: ${d.settings_error}`) : ""),
        h("td", {}, d.uptime_s != null ? minutes(d.uptime_s * 1000) : "—"))))))));
  await outboundCard(root);
  await windowSettingsCard(root, rows);
}

// Outbound links (issue 18): each configured target serving the principal's units, its
// last success and error, backlog and dead deliveries; a district admin resends a dead
// one and switches a target off or on for a unit (the server's file names the targets).
const obError = (e) => (!e ? "" : e.startsWith("refused: ") ? `${T().ob.refused}: ${e.slice(9)}`
  : e.startsWith("resent by ") ? `${T().ob.resentBy} ${e.slice(10)}` : e);

async function outboundCard(root) {
  let data;
  try { data = await api("/api/outbound"); } catch { return; }
  if (!data.targets.length && !data.dead.length) return;
  const O = T().ob;
  const can = S.me.can.outbound;
  const names = new Map(S.units.map((u) => [u.site, u.name]));
  const unitName = (site) => names.get(site) || site || "—";
  const switches = (t) => {
    if (!can) {
      return t.units.map((u) => h("div", { class: u.enabled ? "" : "bad" }, `${unitName(u.site)}: ${u.enabled ? O.on : O.off}`));
    }
    const reason = h("input", { class: "note ob-reason", placeholder: O.reason, "aria-label": O.reason });
    return [reason, ...t.units.map((u) => h("label", { class: "ob-switch" },
      h("input", { type: "checkbox", checked: u.enabled, dataset: { target: t.name, site: u.site },
        onchange: async (ev) => {
          const box = ev.target;
          if (!reason.value.trim()) { box.checked = !box.checked; reason.focus(); return; }
          await api(`/api/outbound/targets/${enc(t.name)}/switch`, { method: "POST",
            body: JSON.stringify({ site: u.site, enabled: box.checked, reason: reason.value.trim() }) });
          render();
        } }), ` ${unitName(u.site)}`))];
  };
  const targets = stacked(h("table", { id: "outbound-targets" },
    h("thead", {}, h("tr", {}, [O.target, O.type, O.kinds, O.units, O.lastSuccess, O.lastError, O.backlog, O.dead].map((x) => h("th", {}, x)))),
    h("tbody", {}, data.targets.map((t) => h("tr", { class: t.dead ? "bad" : "", dataset: { target: t.name } },
      h("td", {}, t.name, t.enabled ? "" : ` (${O.offInFile})`), h("td", {}, O.types[t.type] || t.type),
      h("td", {}, t.kinds.map((k) => O.kind[k] || k).join("、")), h("td", { class: "ob-units" }, switches(t)),
      h("td", {}, fmtDateTime(t.last_success_ms)),
      h("td", {}, t.last_error_ms ? `${fmtDateTime(t.last_error_ms)} ${obError(t.last_error)}` : "—"),
      h("td", { class: "ob-backlog" }, String(t.backlog)), h("td", { class: "ob-dead" }, String(t.dead)))))));
  const dead = data.dead.length ? stacked(h("table", { id: "outbound-dead" },
    h("thead", {}, h("tr", {}, [O.queued, O.target, O.kindCol, O.unit, O.attempts, O.lastError, ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, data.dead.map((d) => h("tr", { class: "bad", dataset: { delivery: String(d.id) } },
      h("td", {}, fmtDateTime(d.created_ms)), h("td", {}, d.target), h("td", {}, O.kind[d.kind] || d.kind),
      h("td", {}, unitName(d.site)), h("td", {}, String(d.attempts)), h("td", {}, obError(d.last_error)),
      h("td", {}, can ? h("button", { type: "button", class: "resend-btn", onclick: async () => {
        await api(`/api/outbound/deliveries/${d.id}/resend`, { method: "POST", body: "{}" });
        render();
      } }, O.resend) : ""))))))
    : h("p", { class: "ok", id: "outbound-no-dead" }, O.noDead);
  root.append(h("section", { class: "card", id: "outbound" }, h("h2", {}, O.title), targets, h("h3", {}, O.deadTitle), dead));
}

// Window settings over the air (issue 19): each window's settings status (the bundle
// last sent, the serial its terminal says it applied, its refusal) and the pushes on the
// record; a district admin pushes fields to a scope and withdraws a push with a reason.
// The fields a push may set (agent/overrides.py OVERRIDABLE); the server checks each
// value (422 naming the field) and the terminal checks it again against its window file.
const WS_FIELDS = [
  "rules.greet_within_s", "rules.stand_within_s", "rules.farewell_within_s", "rules.see_off_s",
  "rules.away_after_s", "rules.sign_present_flag_s", "rules.repeat_press_s", "rules.session_timeout_s",
  "rules.presence_hold_s", "rules.smile_threshold", "rules.too_broad_threshold", "rules.no_smile_below",
  "rules.min_observed_share", "camera.idle_fps", "camera.active_fps", "camera.lores_width",
  "camera.lores_height", "label"];
const WS_INTEGER = new Set(["camera.lores_width", "camera.lores_height"]);
const WS_STATUS_CLASS = { applied: "ok", pending: "warn", refused: "bad", "not sent": "bad", none: "muted" };

const wsFieldName = (path) => T().ws.fieldNames[path] || "";
const wsValue = (v) => (typeof v === "string" ? `"${v}"` : JSON.stringify(v));
// "rules.greet_within_s = 6", after the field's short name where it has one
const wsFields = (fields) => Object.entries(fields).map(([path, v]) => h("div", { class: "ws-field" },
  wsFieldName(path) ? h("span", { class: "ws-fname" }, `${wsFieldName(path)} `) : "", h("code", {}, `${path} = ${wsValue(v)}`)));

// An API failure in words: the server's detail after what its status means here.
function wsError(err) {
  const m = /^(\d{3}) ([\s\S]*)$/.exec(String(err.message || err));
  if (!m) return String(err.message || err);
  const why = T().ws.errors[m[1]];
  return why ? `${why}: ${m[2]}` : `${m[1]} ${m[2]}`;
}

async function windowSettingsCard(root, fleet) {
  let data;
  try { data = await api("/api/window-settings"); } catch { return; }
  const W = T().ws;
  const can = S.me.can.window_settings;
  const names = new Map(S.units.map((u) => [u.site, u.name]));
  const labels = new Map(fleet.map((d) => [`${d.site}/${d.window}`, d.label]));
  // a terminal that has reported its health and no serial runs its window file alone
  const reported = new Set(fleet.filter((d) => d.health_ms).map((d) => `${d.site}/${d.window}`));
  const applied = (w) => w.applied_serial ?? (reported.has(`${w.site}/${w.window}`) ? W.windowFile : "");
  // one centre's windows need only their labels
  const oneSite = new Set(data.windows.map((w) => w.site)).size <= 1;
  const windowName = (site, w) => `${names.get(site) || site} ${labels.get(`${site}/${w}`) || w}`;
  const scopeName = (scope) => {
    if (scope === "all") return W.city;
    const [kind, rest] = [scope.slice(0, scope.indexOf(":")), scope.slice(scope.indexOf(":") + 1)];
    if (kind === "district") return `${rest}${W.wholeDistrict}`;
    if (kind === "site") return names.get(rest) || rest;
    if (kind === "window") { const [site, w] = rest.split("/"); return windowName(site, w); }
    return scope;
  };
  const republish = (w) => h("button", { type: "button", class: "ws-republish-btn",
    onclick: async (ev) => { await act(ev, () => api("/api/window-settings/republish", { method: "POST", body: JSON.stringify({ scope: `window:${w.site}/${w.window}` }) })
      .catch((err) => { throw new Error(wsError(err)); })); } }, W.republish);
  const detail = (w) => (w.status === "not sent" ? w.sent_error : w.terminal_error) || "";
  const windows = stacked(h("table", { id: "ws-windows" },
    h("thead", {}, h("tr", {}, [T().window, T().status, W.sentSerial, W.sentAt, W.appliedSerial, W.detail, ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, data.windows.map((w) => h("tr", { class: w.status === "refused" || w.status === "not sent" ? "bad" : "", dataset: { site: w.site, window: w.window, status: w.status } },
      h("td", {}, oneSite ? labels.get(`${w.site}/${w.window}`) || w.window : windowName(w.site, w.window)),
      h("td", { class: `ws-status ${WS_STATUS_CLASS[w.status] || ""}` }, W.status[w.status] || w.status),
      h("td", {}, w.sent_serial ?? ""), h("td", {}, w.sent_ms ? fmtDateTime(w.sent_ms) : ""),
      h("td", {}, applied(w)), h("td", { class: "ws-detail" }, detail(w)),
      h("td", {}, can && w.status === "not sent" ? republish(w) : ""))))));
  const withdraw = (p) => {
    const reason = h("input", { class: "note ws-reason", placeholder: W.reason, "aria-label": W.reason, maxlength: 500 });
    return h("div", { class: "ws-withdraw" }, reason, h("button", { type: "button", class: "ws-withdraw-btn",
      onclick: async (ev) => {
        if (!reason.value.trim()) { reason.focus(); return; }
        await act(ev, () => api(`/api/window-settings/${p.id}/withdraw`, { method: "POST", body: JSON.stringify({ reason: reason.value.trim() }) })
          .catch((err) => { throw new Error(wsError(err)); }));
      } }, W.withdraw));
  };
  const state = (p) => (p.withdrawn_ms
    ? h("span", { class: "muted" }, `${W.withdrawn} ${fmtDateTime(p.withdrawn_ms)} · ${p.withdrawn_by || ""}${p.withdraw_reason ? `: ${p.withdraw_reason}` : ""}`)
    : can && (p.scope !== "all" || S.me.scope === "all") ? [h("span", { class: "ok" }, W.live), withdraw(p)] : h("span", { class: "ok" }, W.live));
  const pushes = data.pushes.length ? stacked(h("table", { id: "ws-pushes" },
    h("thead", {}, h("tr", {}, ["#", W.scope, W.fields, W.note, W.by, W.at, T().status].map((x) => h("th", {}, x)))),
    h("tbody", {}, data.pushes.map((p) => h("tr", { class: p.withdrawn_ms ? "muted" : "", dataset: { push: String(p.id) } },
      h("td", {}, String(p.id)), h("td", { class: "ws-scope" }, scopeName(p.scope)), h("td", { class: "ws-fields" }, wsFields(p.fields)),
      h("td", { class: "ws-note" }, p.note), h("td", {}, p.by), h("td", {}, fmtDateTime(p.at_ms)), h("td", { class: "ws-state" }, state(p)))))))
    : h("p", { class: "muted", id: "ws-no-pushes" }, W.noPushes);
  const card = h("section", { class: "card", id: "window-settings" }, h("h2", {}, W.title),
    h("h3", {}, W.windows), windows, h("h3", {}, W.pushes), pushes);
  if (can) card.append(h("h3", {}, W.newPush), wsPushForm(scopeName), S.wsNote ? h("p", { class: "ok", id: "ws-pushed" }, S.wsNote) : "");
  S.wsNote = "";
  root.append(card);
}

// The push form: where (a district, a centre, or one window of the centre), up to two
// fields with their values, and why.
function wsPushForm(scopeName) {
  const W = T().ws;
  const scopes = [...(S.me.scope === "all" ? ["all"] : []),
    ...[...new Set(S.units.map((u) => u.district))].sort().map((d) => `district:${d}`),
    ...S.units.map((u) => `site:${u.site}`)];
  const scope = h("select", { name: "scope", "aria-label": W.scope },
    scopes.map((s) => h("option", { value: s, selected: s === `site:${S.site}` }, scopeName(s))));
  const windowSel = h("select", { name: "window", "aria-label": T().window });
  const loadWindows = async () => {
    const site = scope.value.startsWith("site:") ? scope.value.slice(5) : null;
    windowSel.hidden = !site;
    windowSel.replaceChildren(h("option", { value: "" }, W.wholeCentre));
    if (!site) return;
    const ws = await api(`/api/windows?${qs({ site })}`);
    windowSel.append(...ws.map((w) => h("option", { value: w.window }, `${w.label || ""} (${w.window})`)));
  };
  scope.addEventListener("change", loadWindows);
  loadWindows();
  const row = (n, optional) => {
    const field = h("select", { name: `field${n}`, "aria-label": W.field },
      optional ? h("option", { value: "" }, W.noSecond) : "",
      WS_FIELDS.map((f) => h("option", { value: f }, wsFieldName(f) ? `${wsFieldName(f)} (${f})` : f)));
    const value = h("input", { name: `value${n}`, "aria-label": W.value, placeholder: W.value, class: "ws-value" });
    const fit = () => {
      const text = field.value === "label";
      value.type = text ? "text" : "number";
      value.step = WS_INTEGER.has(field.value) ? "1" : "any";
      value.required = !optional;
      value.disabled = optional && !field.value;
    };
    field.addEventListener("change", fit);
    fit();
    return h("span", { class: "ws-row" }, field, value);
  };
  const note = h("input", { name: "note", class: "ws-note-input", required: true, maxlength: 280, placeholder: W.notePh, "aria-label": W.notePh });
  const form = adminForm("ws-push", [scope, windowSel, row(1, false), row(2, true), note], W.push, async (f) => {
    const e = f.elements;
    const fields = {};
    for (const n of [1, 2]) {
      const path = e[`field${n}`].value;
      if (!path) continue;
      const raw = e[`value${n}`].value.trim();
      if (raw === "") throw new Error(`${path}: ${W.needValue}`);
      fields[path] = path === "label" ? raw : Number(raw);
    }
    const target = e.window.value && !e.window.hidden ? `window:${e.scope.value.slice(5)}/${e.window.value}` : e.scope.value;
    let r;
    try {
      r = await api("/api/window-settings", { method: "POST", body: JSON.stringify({ scope: target, fields, note: e.note.value.trim() }) });
    } catch (err) { throw new Error(wsError(err)); }
    const failed = r.publications.filter((p) => !p.published).length;
    S.wsNote = `${W.pushed} #${r.push_id}: ${r.publications.length} ${W.toWindows}${failed ? `, ${failed} ${W.notSent}` : ""}`;
    await render();
  });
  return form;
}

// ------------------------------------------------------------------ roster: who served where

// A local date and time (the server's zone) from an <input type=datetime-local> value.
const localToMs = (value) => {
  if (!value) return undefined;
  const [d, t] = value.split("T");
  const [y, mo, da] = d.split("-").map(Number);
  const [hh, mm] = t.split(":").map(Number);
  const guess = Date.UTC(y, mo - 1, da, hh, mm);
  // the zone's offset at that moment, read back through Intl (no offset tables here)
  const shown = new Date(guess).toLocaleString("sv-SE", { timeZone: tz() }).replace(" ", "T").slice(0, 16);
  const [sd, st] = shown.split("T");
  const [sy, smo, sda] = sd.split("-").map(Number);
  const [sh, sm] = st.split(":").map(Number);
  return guess - (Date.UTC(sy, smo - 1, sda, sh, sm) - guess);
};

async function viewRoster(root) {
  const day = S.rosterDay || localDay();
  const [data, clerks, windows] = await Promise.all([
    api(`/api/roster?${qs({ site: S.site, day })}`), api(`/api/clerks?${qs({ site: S.site })}`),
    api(`/api/windows?${qs({ site: S.site })}`)]);
  const names = new Map(clerks.map((c) => [c.clerk_id, c.name]));
  const who = (id) => (names.get(id) ? `${names.get(id)} (${id})` : id);
  const picker = h("input", { type: "date", id: "roster-day", value: day, "aria-label": T().day,
    onchange: (ev) => { S.rosterDay = ev.target.value; render(); } });
  const can = S.me.can.roster;
  const signOut = (s) => h("button", { type: "button", class: "sign-out-btn",
    onclick: async (ev) => { await act(ev, () => api("/api/roster/sign-out", { method: "POST", body: JSON.stringify({ site: S.site, window: s.window }) })); } }, T().signOut);
  root.append(h("section", { class: "card" }, h("h2", {}, T().shifts, picker),
    data.shifts.length === 0 ? h("p", { class: "muted" }, T().noShifts) : h("div", { class: "scroll" },
      stacked(h("table", { id: "shifts" }, h("thead", {}, h("tr", {}, [T().window, T().clerk, T().from, T().until, T().source, T().recordedBy, ""].map((x) => h("th", {}, x)))),
        h("tbody", {}, data.shifts.map((s) => h("tr", { dataset: { window: s.window, clerk: s.clerk_id } },
          h("td", {}, s.window), h("td", {}, who(s.clerk_id)), h("td", {}, fmtDateTime(s.start_ms)),
          h("td", {}, s.end_ms ? fmtDateTime(s.end_ms) : T().onShift), h("td", {}, T().sources[s.source] || s.source),
          h("td", {}, s.recorded_by || ""), h("td", {}, can && !s.end_ms ? signOut(s) : "")))))))));
  if (can) {
    const form = adminForm("sign-in", [
        h("select", { name: "clerk", "aria-label": T().clerk, required: true }, clerks.map((c) => h("option", { value: c.clerk_id }, who(c.clerk_id)))),
        h("select", { name: "window", "aria-label": T().window, required: true }, windows.map((w) => h("option", { value: w.window }, `${w.window} ${w.label || ""}`))),
        h("label", { class: "late" }, T().lateFrom, h("input", { type: "datetime-local", name: "from", "aria-label": T().lateFrom }))],
      T().signIn, async (f) => {
        const e = f.elements;
        const r = await api("/api/roster", { method: "POST", body: JSON.stringify({ clerk_id: e.clerk.value, site: S.site, window: e.window.value, start_ms: localToMs(e.from.value) }) });
        S.rosterNote = r.sessions_taken ? `${T().taken}: ${r.sessions_taken}` : "";
        await render();
      });
    root.lastChild.append(form, S.rosterNote ? h("p", { class: "ok", id: "roster-note" }, S.rosterNote) : "");
    S.rosterNote = "";
  }
  root.append(h("section", { class: "card" }, h("h2", {}, T().planned),
    h("div", { class: "scroll" }, stacked(h("table", { id: "planned" }, h("thead", {}, h("tr", {}, [T().window, T().clerk, T().from, T().until, T().status].map((x) => h("th", {}, x)))),
      h("tbody", {}, data.planned.map((p) => h("tr", { class: p.missing ? "bad" : "" },
        h("td", {}, p.window), h("td", {}, who(p.clerk_id)), h("td", {}, fmtDateTime(p.from_ms)), h("td", {}, fmtDateTime(p.to_ms)),
        h("td", {}, p.missing ? T().missing : p.signed_in ? T().signedIn : "—")))))))));
  root.append(h("section", { class: "card" }, h("h2", {}, T().unattributed),
    stacked(h("table", { id: "unattributed" }, h("thead", {}, h("tr", {}, [T().window, T().sessions].map((x) => h("th", {}, x)))),
      h("tbody", {}, data.unattributed.map((u) => h("tr", {}, h("td", {}, u.window), h("td", {}, u.sessions))))))));
}

// ------------------------------------------------------------------ administration (can.users)

const ROLES = ["district_admin", "centre_manager", "inspector", "readonly", "clerk"];
const GRANTS = ["read", "kpis", "metrics", "queue", "callbacks"];

// A form whose submit calls `run`; failures show in its .error line, success re-renders.
function adminForm(id, fields, label, run) {
  const error = h("span", { class: "error", role: "alert" });
  const form = h("form", { class: "admin-form", id }, fields, h("button", { type: "submit" }, label), error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try { await run(form); } catch (err) { error.textContent = String(err.message || err); }
  });
  return form;
}

const input = (name, attrs = {}) => h("input", { name, "aria-label": T()[name] || name, placeholder: T()[name] || name, ...attrs });
const roleSelect = (name, value) => h("select", { name, "aria-label": T().role },
  ROLES.map((r) => h("option", { value: r, selected: r === value }, T().roles[r])));

function userRow(u) {
  const locked = u.locked_until_ms && u.locked_until_ms > Date.now();
  const state = u.disabled ? T().disabled : locked ? `${T().locked} ${fmtDateTime(u.locked_until_ms)}` : T().enabled;
  const post = (path, body) => api(`/api/users/${enc(u.username)}/${path}`, { method: "POST", body: JSON.stringify(body || {}) });
  const self = u.username === S.me.username;
  const toggle = h("button", { type: "button", class: u.disabled ? "enable-btn" : "disable-btn", disabled: self && !u.disabled,
    onclick: async (ev) => { await act(ev, () => post(u.disabled ? "enable" : "disable")); } }, u.disabled ? T().enable : T().disable);
  const pw = adminForm(`pw-${u.username}`, input("newPassword", { type: "password", autocomplete: "new-password", required: true, minlength: 12 }),
    T().resetPassword, async (f) => { await post("password", { password: f.elements.newPassword.value }); flash(f, T().saved); f.reset(); });
  const role = adminForm(`role-${u.username}`, [roleSelect("role", u.role), input("scope", { value: u.scope, required: true })],
    T().apply, async (f) => { await post("role", { role: f.elements.role.value, scope: f.elements.scope.value }); await render(); });
  return h("tr", { class: u.disabled ? "muted" : "", dataset: { user: u.username } },
    h("td", {}, u.username), h("td", { class: "display-name" }, u.display_name), h("td", {}, T().roles[u.role] || u.role),
    h("td", {}, u.scope), h("td", {}, u.clerk_id || ""), h("td", { class: "state" }, state),
    h("td", { class: "actions" }, toggle, pw, role));
}

// Run a row's action; a failure shows next to the button, success re-renders the page.
async function act(ev, run) {
  const btn = ev.currentTarget;
  try { await run(); await render(); } catch (err) {
    btn.after(h("span", { class: "error", role: "alert" }, String(err.message || err)));
  }
}

function flash(form, text) { const e = $(".error", form); e.textContent = text; e.classList.add("ok"); }

function tokenRow(t) {
  const revoke = t.revoked_ms ? null : h("button", { type: "button", class: "revoke-btn",
    onclick: async (ev) => { await act(ev, () => api(`/api/tokens/${enc(t.token_id)}/revoke`, { method: "POST", body: "{}" })); } }, T().revoke);
  return h("tr", { class: t.revoked_ms ? "muted" : "", dataset: { token: t.token_id } },
    h("td", {}, t.token_id), h("td", { class: "token-name" }, t.name), h("td", {}, t.scope),
    h("td", {}, (t.grants || []).map((g) => T().grantNames[g] || g).join(", ")), h("td", {}, t.created_by),
    h("td", {}, fmtDateTime(t.created_ms)), h("td", {}, fmtDateTime(t.last_used_ms)),
    h("td", {}, t.revoked_ms ? `${T().revoked} ${fmtDateTime(t.revoked_ms)}` : revoke));
}

function auditRow(e) {
  const detail = e.detail === null || e.detail === undefined ? "" : typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail);
  return h("tr", { dataset: { audit: e.id } }, h("td", {}, fmtDateTime(e.ts_ms)), h("td", {}, e.username), h("td", {}, e.action),
    h("td", {}, e.target || ""), h("td", { class: "audit-detail" }, detail), h("td", {}, e.site || ""));
}

async function viewAdmin(root) {
  if (!S.me.can.users) { root.append(h("p", { class: "bad" }, T().adminOnly)); return; }
  const onlySite = localStorage.getItem("ww-audit-site") === "1";
  const [users, tokens, audit] = await Promise.all([
    api("/api/users"), api("/api/tokens"),
    api(`/api/audit?${qs({ limit: 200, site: onlySite ? S.site : undefined })}`),
  ]);
  const addUser = adminForm("add-user", [
      input("username", { required: true, autocomplete: "off" }), input("displayName"),
      input("password", { type: "password", autocomplete: "new-password", required: true, minlength: 12 }),
      roleSelect("role", "readonly"), input("scope", { required: true, value: `site:${S.site}` }), input("clerkId")],
    T().addUser, async (f) => {
      const e = f.elements;
      await api("/api/users", { method: "POST", body: JSON.stringify({ username: e.username.value, display_name: e.displayName.value,
        password: e.password.value, role: e.role.value, scope: e.scope.value, clerk_id: e.clerkId.value || null }) });
      await render();
    });
  root.append(h("section", { class: "card" }, h("h2", {}, T().users),
    h("table", { id: "users" }, h("thead", {}, h("tr", {}, [T().username, T().displayName, T().role, T().scope, T().clerk, T().status, ""].map((x) => h("th", {}, x)))),
      h("tbody", {}, users.map(userRow))), addUser));

  const shown = h("div", { id: "new-token", class: "token-once", hidden: true });
  const newToken = adminForm("add-token", [input("tokenName", { required: true, pattern: "[\\w.\\-]{1,64}" }),
      input("scope", { required: true, value: `site:${S.site}` }),
      h("span", { class: "grants" }, GRANTS.map((g) => h("label", {}, h("input", { type: "checkbox", name: "grant", value: g, checked: g === "read" }), T().grantNames[g])))],
    T().createToken, async (f) => {
      const grants = [...f.querySelectorAll("input[name=grant]:checked")].map((x) => x.value);
      const r = await api("/api/tokens", { method: "POST", body: JSON.stringify({ name: f.elements.tokenName.value, scope: f.elements.scope.value, grants }) });
      $("#tokens tbody").replaceChildren(...(await api("/api/tokens")).map(tokenRow));
      shown.replaceChildren(h("p", {}, T().tokenOnce), h("code", { id: "token-value" }, r.token));
      shown.hidden = false;
      f.reset();
    });
  root.append(h("section", { class: "card" }, h("h2", {}, T().tokens),
    h("table", { id: "tokens" }, h("thead", {}, h("tr", {}, ["ID", T().tokenName, T().scope, T().grants, T().createdBy, T().created, T().lastUsed, ""].map((x) => h("th", {}, x)))),
      h("tbody", {}, tokens.map(tokenRow))), newToken, shown));

  const filter = h("label", { class: "audit-filter" }, h("input", { type: "checkbox", id: "audit-site", checked: onlySite,
    onchange: (ev) => { localStorage.setItem("ww-audit-site", ev.target.checked ? "1" : "0"); render(); } }), T().onlySite);
  root.append(h("section", { class: "card" }, h("h2", {}, T().audit, filter),
    h("table", { id: "audit" }, h("thead", {}, h("tr", {}, [T().time, T().username, T().action, T().target, T().detail, T().unit].map((x) => h("th", {}, x)))),
      h("tbody", {}, audit.map(auditRow)))));
}

// ------------------------------------------------------------------ shell

// A clerk's account reads only its own records: its page is #/me; whole-unit pages are not for it.
const isClerk = () => S.me?.role === "clerk";
const home = () => (isClerk() ? "#/me" : "#/hall");
const UNIT_PAGES = ["hall", "alerts", "assessment", "appeals", "settings", "units", "roster", "fleet", "helpdesk"];

async function render() {
  destroyCharts();
  // Each render draws into its own container: one still waiting for the API when the
  // next starts (a quick change of period or page) draws into a detached one, unseen.
  const root = h("div", { class: "view-body" });
  $("#view").replaceChildren(root);
  const route = (location.hash || home()).slice(2).split("/").map((x) => { try { return decodeURIComponent(x); } catch { return x; } });
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${route[0]}`);
  syncMenu(false);
  try {
    if (route[0] === "alerts") await viewAlerts(root);
    else if (route[0] === "window") await viewDetail(root, { site: route[1], window: route[2] }, await windowTitle(route[1], route[2]));
    else if (route[0] === "clerk") await viewDetail(root, { clerk_id: route[1] }, await clerkTitle(route[1]));
    else if (route[0] === "assessment") await viewAssessment(root);
    else if (route[0] === "units") await viewUnits(root);
    else if (route[0] === "fleet") await viewFleet(root);
    else if (route[0] === "roster") await viewRoster(root);
    else if (route[0] === "admin") await viewAdmin(root);
    else if (Object.hasOwn(PAGES, route[0])) await PAGES[route[0]](root, route);
    else await viewHall(root);
  } catch (err) { root.append(h("p", { class: "bad" }, String(err))); }
  document.body.dataset.ready = location.hash || home();
}

// The header on a phone: the menu folds behind one button that names the page shown.
function syncMenu(open) {
  const btn = $("#menu");
  document.body.classList.toggle("menu-open", open);
  btn.setAttribute("aria-expanded", open ? "true" : "false");
  btn.textContent = `☰ ${$("header nav a.active")?.textContent || T().menu}`;
}

function applyLang() {
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T()[el.dataset.i18n];
  $("#lang").textContent = T().switchTo;
  const conn = $("#conn");
  if (conn.dataset.state) conn.textContent = T()[conn.dataset.state];
  for (const [id, label] of [["site", T().unit], ["period", T().period], ["period-kind", T().periodKind], ["menu", T().menu]]) $(`#${id}`).setAttribute("aria-label", label);
  if (S.me) $("#who").textContent = `${S.me.display_name} · ${T().roles[S.me.role] || S.me.role}`;
}

function connect() {
  const es = new EventSource("/api/stream");
  const badge = $("#conn");
  // the state kept by name, so a change of language names it again (applyLang)
  es.onopen = () => { badge.dataset.state = "live"; badge.textContent = T().live; badge.className = "badge on"; };
  es.onerror = () => { badge.dataset.state = "lost"; badge.textContent = T().lost; badge.className = "badge off"; };
  es.onmessage = (m) => onLive(JSON.parse(m.data));
}

async function main() {
  [S.me, S.meta] = await Promise.all([api("/api/me"), api("/api/meta")]);
  S.units = await api("/api/units");
  S.site = localStorage.getItem("ww-site") || S.units[0]?.site;
  if (!S.units.some((u) => u.site === S.site)) S.site = S.units[0]?.site;
  S.month = localMonth();
  if (!["month", "quarter", "year"].includes(S.periodKind)) S.periodKind = "month";
  S.period = window.WW_PERIOD(S.periodKind, S.month);
  $("#who").textContent = `${S.me.display_name} · ${T().roles[S.me.role] || S.me.role}`;
  $("#nav-admin").hidden = !S.me.can.users;
  $("#nav-me").hidden = !isClerk();
  for (const a of document.querySelectorAll("header nav a")) {
    if (isClerk() && UNIT_PAGES.includes(a.getAttribute("href").slice(2))) a.hidden = true;
  }
  // a clerk's two or three links need no menu to fold them into, even on a phone
  document.body.classList.toggle("few-links", [...document.querySelectorAll("header nav a")].filter((a) => !a.hidden).length <= 3);
  const sel = $("#site");
  for (const u of S.units) sel.append(h("option", { value: u.site }, u.name));
  sel.value = S.site;
  sel.addEventListener("change", () => { S.site = sel.value; localStorage.setItem("ww-site", S.site); render(); });
  const per = $("#period"); per.value = S.month;
  const kind = $("#period-kind"); kind.value = S.periodKind;
  const pick = () => { S.period = window.WW_PERIOD(S.periodKind, S.month); render(); };
  per.addEventListener("change", () => { if (per.value) { S.month = per.value; pick(); } });
  kind.addEventListener("change", () => { S.periodKind = kind.value; localStorage.setItem("ww-period-kind", kind.value); pick(); });
  $("#menu").addEventListener("click", () => syncMenu(!document.body.classList.contains("menu-open")));
  $("#lang").addEventListener("click", () => { S.lang = S.lang === "zh" ? "en" : "zh"; localStorage.setItem("ww-lang", S.lang); applyLang(); render(); });
  $("#logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); location.href = "/login"; });
  window.addEventListener("hashchange", render);
  // a phone turned sideways (or a window resized) past the phone width: tables and charts redrawn for it
  window.matchMedia(PHONE).addEventListener("change", render);
  applyLang();
  await render();
  if (isClerk()) $("#conn").hidden = true; // the live hall is not a clerk's
  else connect();
}

main();
