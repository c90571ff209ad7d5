// Bad-review cases (#/cases): the centre's cases with their 15-working-day clock, filtered
// open / overdue / closed / all (#/cases/overdue ...), and one case (#/cases/<id>) with
// its history and a form for each step: assign, call-back, rectification, close, reopen.
// A clerk's account reads its own cases here, without the forms. Uses app.js's helpers.
"use strict";
(() => { // this page's names stay its own (other pages share the global scope)

Object.assign(window.I18N.zh, {
  navCases: "差评整改",
  cw: {
    title: "差评整改", filters: { open: "未办结", overdue: "已逾期", closed: "已办结", all: "全部" },
    opened: "评价时间", window: "窗口", clerk: "窗口人员", rating: "评价", dueDay: "整改期限", left: "剩余",
    assigned: "承办人", callback: "回访", rectification: "整改情况", status: "状态", none: "暂无差评整改事项",
    open: "办理中", closed: "已办结", reopened: (n) => `重新打开 ${n} 次`, unassigned: "未指派",
    daysLeft: (n) => `剩余 ${n} 个工作日`, dueToday: "今日到期", overdueBy: (n) => (n > 0 ? `逾期 ${n} 个工作日` : "已逾期"),
    dueBy: (d) => `${d} 24:00 前`, notCalled: "未回访", notRectified: "未记录",
    outcomes: { reached_satisfied: "已联系，满意", reached_not_satisfied: "已联系，仍不满意", unreachable: "未联系上" },
    back: "返回列表", facts: "事项", session: "服务记录", openedAt: "评价时间", closedAt: "办结时间", closedBy: "办结人",
    steps: { assign: "指派", callback: "回访", rectify: "整改", close: "办结", reopen: "重新打开" },
    history: "办理记录", when: "时间", by: "操作人", step: "环节", note: "说明", detailCol: "内容",
    assignTo: "指派给", assignNote: "交办说明（可选）", calledAt: "回访时间", outcome: "回访结果", callNote: "市民意见（可选）",
    rectifyNote: "整改措施", closeNote: "办结说明", reopenReason: "重新打开的原因",
    missing: { callback: "回访市民", rectification: "整改情况" },
    needs: (what) => `办结前请先记录：${what}`, sep: "、", ready: "回访和整改均已记录，可以办结。",
    redo: "该事项已重新打开，请重新记录整改情况后再办结。", readOnly: "仅供查看：本人的差评事项。",
    noAssignees: "本中心暂无可指派的用户", saved: "已记录", refused: "未能记录", provisional: "暂定",
    scope: { site: "本中心", district: "区", all: "全市" }, calledBy: (o, t) => `${o}（${t}）`,
    handle: "办理", view: "查看",
  },
});
Object.assign(window.I18N.en, {
  navCases: "Cases",
  cw: {
    title: "Bad-review cases", filters: { open: "Open", overdue: "Overdue", closed: "Closed", all: "All" },
    opened: "Reviewed", window: "Window", clerk: "Clerk", rating: "Rating", dueDay: "Due", left: "Left",
    assigned: "Assigned to", callback: "Call-back", rectification: "Rectification", status: "Status", none: "No bad-review cases",
    open: "open", closed: "closed", reopened: (n) => `reopened ${n}×`, unassigned: "not assigned",
    daysLeft: (n) => `${n} working day${n === 1 ? "" : "s"} left`, dueToday: "due today",
    overdueBy: (n) => (n > 0 ? `overdue by ${n} working day${n === 1 ? "" : "s"}` : "overdue"),
    dueBy: (d) => `by the end of ${d}`, notCalled: "not called back", notRectified: "not recorded",
    outcomes: { reached_satisfied: "reached, satisfied", reached_not_satisfied: "reached, not satisfied", unreachable: "could not be reached" },
    back: "Back to the list", facts: "Case", session: "Session", openedAt: "Reviewed at", closedAt: "Closed at", closedBy: "Closed by",
    steps: { assign: "Assign", callback: "Call-back", rectify: "Rectification", close: "Close", reopen: "Reopen" },
    history: "History", when: "When", by: "By", step: "Step", note: "Note", detailCol: "Detail",
    assignTo: "Assign to", assignNote: "Note (optional)", calledAt: "Called at", outcome: "Outcome", callNote: "What the citizen said (optional)",
    rectifyNote: "What was done", closeNote: "Closing note", reopenReason: "Why it is reopened",
    missing: { callback: "the call-back to the citizen", rectification: "the rectification" },
    needs: (what) => `Before closing, record ${what}.`, sep: " and ", ready: "Call-back and rectification recorded: the case can be closed.",
    redo: "The case was reopened: record the rectification again before closing it.", readOnly: "Read-only: your own cases.",
    noAssignees: "No user of this centre can be assigned", saved: "recorded", refused: "not recorded", provisional: "provisional",
    scope: { site: "centre", district: "district", all: "city" }, calledBy: (o, t) => `${o} (${t})`,
    handle: "Work on it", view: "View",
  },
});

const L = () => T().cw;
const FILTERS = ["open", "overdue", "closed", "all"];

// This page's layout (phones: each case a card instead of a table row), linked once.
function styles() {
  if (document.getElementById("cases-css")) return;
  document.head.append(h("link", { id: "cases-css", rel: "stylesheet", href: "/static/pages/cases.css" }));
}

function clockText(c) {
  if (c.status !== "open" || c.working_days_left === null) return "—";
  if (c.overdue) return L().overdueBy(-c.working_days_left);
  return c.working_days_left === 0 ? L().dueToday : L().daysLeft(c.working_days_left);
}

const ratingText = (c) => T().rating[c.rating] || c.rating;
const statusText = (c) => [c.status === "open" ? L().open : L().closed, c.reopened ? ` · ${L().reopened(c.reopened)}` : ""].join("");
const callbackText = (c) => (c.callback_ms ? L().calledBy(L().outcomes[c.callback_outcome] || "", fmtDateTime(c.callback_ms)) : L().notCalled);
// A localized date and time input value ("YYYY-MM-DDTHH:MM") of now, in the server's zone.
const nowLocal = () => new Date().toLocaleString("sv-SE", { timeZone: tz() }).replace(" ", "T").slice(0, 16);

async function viewList(root, filter) {
  const [cases, names] = await Promise.all([
    api(`/api/cases?${qs({ status: filter === "all" ? undefined : filter, site: S.site })}`), clerkNames(S.site)]);
  const cell = (label, ...kids) => h("td", { dataset: { label } }, ...kids);
  root.append(h("section", { class: "card cases" },
    h("h2", {}, L().title, exportLinks("cases")),
    h("nav", { class: "case-filters", "aria-label": L().status }, FILTERS.map((f) =>
      h("a", { href: f === "open" ? "#/cases" : `#/cases/${f}`, class: f === filter ? "active" : "", dataset: { filter: f } }, L().filters[f]))),
    cases.length === 0 ? h("p", { class: "muted" }, L().none) :
    h("table", { id: "case-list", class: "case-table" },
      h("thead", {}, h("tr", {}, [L().opened, L().window, L().clerk, L().rating, L().dueDay, L().left, L().assigned, L().callback, L().status].map((x) => h("th", {}, x)))),
      h("tbody", {}, cases.map((c) => h("tr", { class: c.overdue ? "bad" : "", dataset: { case: c.case_id } },
        cell(L().opened, h("a", { href: `#/cases/${enc(c.case_id)}` }, fmtDateTime(c.opened_ms))),
        cell(L().window, c.window), cell(L().clerk, clerkText(names, c.clerk_id)), cell(L().rating, ratingText(c)),
        cell(L().dueDay, c.due_day, c.due_provisional ? h("span", { class: "warn", title: T().provisionalWhy }, ` ⚠ ${L().provisional}`) : ""),
        cell(L().left, h("span", { class: c.overdue ? "overdue" : "" }, clockText(c))),
        cell(L().assigned, c.assigned_to || L().unassigned), cell(L().callback, callbackText(c)), cell(L().status, statusText(c))))))));
}

// One step's form: its fields, a button, and where the answer shows.
function stepForm(name, fields, body, { disabled = false } = {}) {
  const msg = h("span", { class: "error", role: "status" });
  const button = h("button", { type: "submit", disabled }, L().steps[name]);
  const form = h("form", { class: "case-step", id: `case-${name}`, dataset: { step: name } },
    h("h3", {}, L().steps[name]), ...fields, h("div", { class: "case-submit" }, button, msg));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    button.disabled = true;
    try {
      await body(form.elements);
      msg.className = "error ok"; msg.textContent = L().saved;
      await render();
    } catch (err) {
      msg.className = "error"; msg.textContent = `${L().refused}: ${err.message}`;
      button.disabled = false;
    }
  });
  return form;
}

const field = (label, input) => h("label", { class: "case-field" }, h("span", {}, label), input);
const post = (id, step, body) => api(`/api/cases/${enc(id)}/${step}`, { method: "POST", body: JSON.stringify(body) });

function stepForms(c) {
  const id = c.case_id;
  if (c.status === "closed") {
    return [stepForm("reopen", [field(L().reopenReason, h("textarea", { name: "reason", required: true, maxlength: 2000, rows: 2 }))],
      (e) => post(id, "reopen", { reason: e.reason.value }))];
  }
  const scope = (u) => (u.scope === "all" ? L().scope.all : u.scope.startsWith("district:") ? L().scope.district : L().scope.site);
  const assignees = c.assignable.map((u) => h("option", { value: u.username, selected: u.username === c.assigned_to },
    `${u.display_name} (${u.username}) · ${T().roles[u.role] || u.role} · ${scope(u)}`));
  const missing = c.missing_to_close.map((m) => L().missing[m]).join(L().sep);
  return [
    c.assignable.length === 0 ? h("p", { class: "muted" }, L().noAssignees) :
    stepForm("assign", [field(L().assignTo, h("select", { name: "who", required: true }, assignees)),
      field(L().assignNote, h("input", { name: "note", maxlength: 2000 }))],
    (e) => post(id, "assign", { assigned_to: e.who.value, note: e.note.value || null })),
    stepForm("callback", [
      field(L().calledAt, h("input", { type: "datetime-local", name: "at", required: true, value: nowLocal(), max: nowLocal() })),
      field(L().outcome, h("select", { name: "outcome", required: true }, Object.entries(L().outcomes).map(([k, v]) => h("option", { value: k }, v)))),
      field(L().callNote, h("input", { name: "note", maxlength: 2000 }))],
    (e) => post(id, "callback", { at_ms: localToMs(e.at.value), outcome: e.outcome.value, note: e.note.value || null })),
    stepForm("rectify", [field(L().rectifyNote, h("textarea", { name: "note", required: true, maxlength: 2000, rows: 3 }, c.rectification || ""))],
      (e) => post(id, "rectification", { note: e.note.value })),
    stepForm("close", [
      h("p", { class: missing ? "bad needs" : "ok needs", id: "case-needs" }, missing ? L().needs(missing) : L().ready),
      field(L().closeNote, h("input", { name: "note", required: true, maxlength: 2000 }))],
    (e) => post(id, "close", { note: e.note.value }), { disabled: Boolean(missing) }),
  ];
}

function historyDetail(a) {
  const d = a.detail || {};
  if (a.action === "assign") return d.assigned_to || "";
  if (a.action === "callback") return L().calledBy(L().outcomes[d.outcome] || "", fmtDateTime(d.called_ms));
  return "";
}

// The centre's name and the clerk's, instead of their codes.
const unitName = (site) => S.units.find((u) => u.site === site)?.name || site;
async function clerkNames(site) {
  const clerks = await api(`/api/clerks?${qs({ site })}`);
  return new Map(clerks.map((k) => [k.clerk_id, k.name]));
}
const clerkText = (names, id) => (id ? (names.has(id) ? `${names.get(id)} (${id})` : id) : "—");

async function viewCase(root, id) {
  const c = await api(`/api/cases/${enc(id)}`);
  const names = await clerkNames(c.site);
  const fact = (k, ...v) => [h("dt", {}, k), h("dd", {}, ...v)];
  const works = S.me.can.close_case;
  root.append(h("section", { class: "card cases", id: "case", dataset: { status: c.status } },
    h("h2", {}, h("a", { href: "#/cases" }, `← ${L().back}`)),
    h("h2", {}, `${L().facts}: ${unitName(c.site)} · ${c.window} · ${ratingText(c)}`,
      h("span", { class: c.overdue ? "badge-overdue" : "muted", id: "case-clock" }, c.status === "open" ? clockText(c) : L().closed)),
    c.status === "open" && c.reopened && !c.rectification ? h("p", { class: "warn" }, L().redo) : "",
    works ? "" : h("p", { class: "muted" }, L().readOnly),
    h("dl", { class: "case-facts" },
      fact(L().status, statusText(c)), fact(L().openedAt, fmtDateTime(c.opened_ms)), fact(L().clerk, clerkText(names, c.clerk_id)),
      fact(L().dueDay, L().dueBy(c.due_day), c.due_provisional ? h("span", { class: "warn", title: T().provisionalWhy }, ` ⚠ ${L().provisional}`) : ""),
      fact(L().assigned, c.assigned_to ? `${c.assigned_to} · ${fmtDateTime(c.assigned_ms)}` : L().unassigned),
      fact(L().callback, callbackText(c), c.callback_note ? h("div", { class: "case-note" }, c.callback_note) : ""),
      fact(L().rectification, c.rectification ? h("div", { class: "case-note" }, c.rectification) : L().notRectified,
        c.rectified_ms ? h("div", { class: "muted" }, fmtDateTime(c.rectified_ms)) : ""),
      c.status === "closed" ? fact(L().closedAt, `${fmtDateTime(c.closed_ms)} · ${c.closed_by || ""}`, c.note ? h("div", { class: "case-note" }, c.note) : "") : ""),
    works ? h("div", { class: "case-steps" }, stepForms(c)) : ""));
  root.append(h("section", { class: "card cases" }, h("h2", {}, L().history),
    c.actions.length === 0 ? h("p", { class: "muted" }, "—") :
    h("table", { id: "case-history", class: "case-table" },
      h("thead", {}, h("tr", {}, [L().when, L().by, L().step, L().detailCol, L().note].map((x) => h("th", {}, x)))),
      h("tbody", {}, c.actions.map((a) => h("tr", { dataset: { action: a.action } },
        h("td", { dataset: { label: L().when } }, fmtDateTime(a.at_ms)), h("td", { dataset: { label: L().by } }, a.by),
        h("td", { dataset: { label: L().step } }, L().steps[a.action] || "—"),
        h("td", { dataset: { label: L().detailCol } }, historyDetail(a)),
        h("td", { class: "case-note", dataset: { label: L().note } }, a.note || "")))))));
}

window.WW_PAGES.cases = async (root, route) => {
  styles();
  const arg = route[1] || "open";
  if (FILTERS.includes(arg)) await viewList(root, arg);
  else await viewCase(root, arg);
};
})();
