// Live hall page: windows and latest events, updated over server-sent events.
"use strict";
const I18N = {
  zh: { title: "暖心窗口 · 大厅实时", connecting: "连接中…", live: "实时", lost: "已断开",
        windows: "窗口", latest: "最新事件", time: "时间", window: "窗口", kind: "事件",
        detail: "详情", clauses: "条款", online: "在线", offline: "离线", lastSeen: "最近",
        events: "已存事件", standing: "站立", seated: "坐姿", away: "离岗", inSession: "服务中",
        idle: "空闲", sign: "请稍候牌", scripted: "模拟感知", camera: "摄像头",
        privacy: "本系统不采集、不传输任何图像，不做人脸识别。", switchTo: "English",
        k: { session_opened: "叫号", stood_up: "起立", smiled: "微笑", evaluated: "评价",
             session_summary: "服务小结", away: "离岗", sign_while_present: "在岗挂牌", fault: "故障" } },
  en: { title: "WarmWindow · live hall", connecting: "connecting…", live: "live", lost: "disconnected",
        windows: "Windows", latest: "Latest events", time: "Time", window: "Window", kind: "Event",
        detail: "Detail", clauses: "Clauses", online: "online", offline: "offline", lastSeen: "last seen",
        events: "stored events", standing: "standing", seated: "seated", away: "away", inSession: "in session",
        idle: "idle", sign: "sign up", scripted: "scripted perception", camera: "camera",
        privacy: "No image is captured off the terminal or transmitted; no face recognition.", switchTo: "中文",
        k: { session_opened: "call", stood_up: "stood up", smiled: "smiled", evaluated: "evaluated",
             session_summary: "session summary", away: "away", sign_while_present: "sign while present", fault: "fault" } },
};
let lang = localStorage.getItem("ww-lang") || "zh";
const T = () => I18N[lang];
const windows = new Map();
const events = [];

function fmtTime(ms) { return ms ? new Date(ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB") : "—"; }

function detail(e) {
  const p = e.payload || e;
  if (p.kind === "stood_up" || p.kind === "smiled")
    return `${p.phase} ${p.on_time ? "✓" : "✗"} ${p.after_ms != null ? "+" + (p.after_ms / 1000).toFixed(1) + "s" : ""}`;
  if (p.kind === "evaluated") return `${p.rating}${p.suspect ? " (suspect: " + p.suspect_reason + ")" : ""}`;
  if (p.kind === "session_opened") return `${p.source}${p.ticket ? " #" + p.ticket : ""}`;
  if (p.kind === "session_summary") return `stood ${p.stood_on_call ? "✓" : "✗"} smile ${p.smiled_at_greeting ? "✓" : "✗"} farewell ${p.stood_at_farewell ? "✓" : "✗"} ${p.rating || ""}`;
  if (p.kind === "away") return `${p.with_sign ? "sign" : "no sign"}${p.violation ? " ✗" : ""}`;
  if (p.kind === "fault") return `${p.code} ${p.detail || ""}`;
  return "";
}

function renderTiles() {
  const root = document.getElementById("tiles");
  root.replaceChildren();
  for (const w of windows.values()) {
    const d = document.createElement("div");
    d.className = "tile " + (w.online ? "online" : "offline");
    d.id = `tile-${w.site}-${w.window}`;
    d.dataset.online = w.online ? "1" : "0";
    const st = w.state;
    const posture = !st ? "" : !st.present ? T().away : st.standing ? T().standing : T().seated;
    d.innerHTML = `<div class="label"></div><div class="meta status"></div><div class="meta state"></div><div class="meta seen"></div>`;
    d.querySelector(".label").textContent = w.label;
    d.querySelector(".status").textContent = w.online ? T().online : T().offline;
    d.querySelector(".state").textContent = st
      ? [posture, st.in_session ? T().inSession : T().idle, st.sign_up ? T().sign : "", T()[st.perception]].filter(Boolean).join(" · ")
      : "";
    d.querySelector(".seen").textContent = `${T().lastSeen} ${fmtTime(w.last_seen_ms || w.availability_ms)}`;
    root.appendChild(d);
  }
}

function renderEvents() {
  const tbody = document.querySelector("#events tbody");
  tbody.replaceChildren();
  for (const e of events.slice(0, 50)) {
    const p = e.payload || e;
    const tr = document.createElement("tr");
    if ((p.kind === "evaluated" && /dissatisfied/.test(p.rating)) || (p.kind === "away" && p.violation)) tr.className = "bad";
    const label = (windows.get(`${p.site}/${p.window}`) || {}).label || p.window;
    for (const text of [fmtTime(p.ts_ms), label, T().k[p.kind] || p.kind, detail(p), (p.clauses || []).join(" ")]) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

function flash(site, window) {
  const el = document.getElementById(`tile-${site}-${window}`);
  if (el) { el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash"); }
}

async function load() {
  const [ws, es, stats] = await Promise.all(["/api/windows", "/api/events?limit=50", "/api/stats"].map(u => fetch(u).then(r => r.json())));
  windows.clear();
  for (const w of ws) windows.set(`${w.site}/${w.window}`, w);
  events.splice(0, events.length, ...es);
  document.getElementById("counts").textContent = `${T().events}: ${stats.events}`;
  renderTiles(); renderEvents();
}

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T()[el.dataset.i18n];
  document.getElementById("lang").textContent = T().switchTo;
  renderTiles(); renderEvents();
}

function connect() {
  const es = new EventSource("/api/stream");
  const badge = document.getElementById("conn");
  es.onopen = () => { badge.textContent = T().live; badge.className = "badge on"; load(); };
  es.onerror = () => { badge.textContent = T().lost; badge.className = "badge off"; };
  es.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "event") {
      const e = msg.event; events.unshift(e); events.length = Math.min(events.length, 200);
      const w = windows.get(`${e.site}/${e.window}`); if (w) w.last_seen_ms = Date.now();
      renderEvents(); renderTiles(); flash(e.site, e.window);
      const c = document.getElementById("counts"); const n = parseInt(c.dataset.n || "0") + 1; c.dataset.n = n;
    } else if (msg.type === "availability") {
      const w = windows.get(`${msg.site}/${msg.window}`); if (w) { w.online = msg.online; w.availability_ms = Date.now(); renderTiles(); }
    } else if (msg.type === "state") {
      const s = msg.state; const w = windows.get(`${s.site}/${s.window}`); if (w) { w.state = s; w.last_seen_ms = Date.now(); renderTiles(); }
    }
  };
}

document.getElementById("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("ww-lang", lang); applyLang(); });
applyLang();
load().then(connect);
setInterval(load, 10000);
