// The help desk's H-ONLINE (#/helpdesk): the figures the help-desk system pushes per
// window and day (warmwindow helpdesk push, docs/helpdesk-feed.md) for the centre and
// month picked in the header: requests, the share answered within a minute and the
// share resolved against the 90 % target, and the month's totals. Not a clerk's page.
"use strict";
(() => { // this page's names stay its own (other pages share the global scope)

Object.assign(window.I18N.zh, {
  navHelpdesk: "帮办",
  hd: {
    title: "帮办窗口线上帮办（H-ONLINE）", month: "本月合计", standard: "标准：首次响应 1 分钟内，办结率不低于 90%",
    day: "日期", window: "窗口", requests: "咨询量", fast: "1 分钟内首次响应", resolved: "办结",
    meets: "是否达标", yes: "达标", no: "未达标", total: "本月合计", allWindows: "全部窗口",
    fastRate: "1 分钟内首次响应率", resolvedRate: "办结率（目标 90%）",
    none: "本月暂无帮办数据：数据由帮办系统每日推送。",
    of: (k, n, rate) => `${k}/${n} · ${rate}`,
  },
});
Object.assign(window.I18N.en, {
  navHelpdesk: "Help desk",
  hd: {
    title: "Help desk online assistance (H-ONLINE)", month: "The month", standard: "Standard: first response within 1 minute, at least 90 % resolved",
    day: "Day", window: "Window", requests: "Requests", fast: "Answered within 1 min", resolved: "Resolved",
    meets: "Standard", yes: "met", no: "not met", total: "Month total", allWindows: "all windows",
    fastRate: "Answered within 1 min", resolvedRate: "Resolved (target 90 %)",
    none: "No help-desk figures this month: the help-desk system pushes them daily.",
    of: (k, n, rate) => `${k}/${n} · ${rate}`,
  },
});

const L = () => T().hd;

// The month picked in the header, as its first and last local day.
function monthDays(month) {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return [`${month}-01`, `${month}-${String(last).padStart(2, "0")}`];
}

const meets = (v) => (v === null || v === undefined ? "—" : v ? L().yes : L().no);
// The resolved share is judged against its target; the first response must be every request's.
const cells = (r) => [
  h("td", {}, r.requests),
  h("td", { class: r.first_response_rate !== null && r.first_response_rate < 1 ? "bad" : "" },
    L().of(r.first_response_within_1min, r.requests, pct(r.first_response_rate))),
  h("td", { class: r.resolved_rate !== null && r.resolved_rate < 0.9 ? "bad" : "" },
    L().of(r.resolved, r.requests, pct(r.resolved_rate))),
  h("td", { class: "meets" }, meets(r.meets_standard)),
];

window.WW_PAGES.helpdesk = async (root) => {
  const [first, last] = monthDays(S.month);
  const data = await api(`/api/helpdesk?${qs({ site: S.site, first_day: first, last_day: last })}`);
  const unit = S.units.find((u) => u.site === S.site)?.name || S.site;
  const sum = (k) => data.days.reduce((a, r) => a + r[k], 0);
  const total = { ...data, first_response_within_1min: sum("first_response_within_1min"), resolved: sum("resolved") };
  root.append(h("section", { class: "card", id: "helpdesk" },
    h("h2", {}, `${L().title} · ${unit} · ${S.month}`),
    h("p", { id: "helpdesk-standard" }, L().standard),
    h("div", { class: "kpis", id: "helpdesk-month" },
      h("div", { class: "kpi" }, `${L().month} · ${L().requests}`, h("b", {}, data.requests)),
      h("div", { class: "kpi" }, L().fastRate, h("b", {}, pct(data.first_response_rate))),
      h("div", { class: "kpi" }, L().resolvedRate, h("b", {}, pct(data.resolved_rate))),
      h("div", { class: "kpi", id: "helpdesk-meets" }, L().meets,
        h("b", { class: data.meets_standard === false ? "bad" : "" }, meets(data.meets_standard)))),
    data.days.length === 0 ? h("p", { id: "helpdesk-none" }, L().none)
      : stacked(h("table", { id: "helpdesk-days" },
        h("thead", {}, h("tr", {}, [L().day, L().window, L().requests, L().fast, L().resolved, L().meets].map((x) => h("th", {}, x)))),
        h("tbody", {},
          data.days.map((r) => h("tr", { class: r.meets_standard === false ? "bad" : "", dataset: { window: r.window, day: r.day } },
            h("td", {}, r.day), h("td", {}, r.window), ...cells(r))),
          h("tr", { class: "total", dataset: { total: "1" } },
            h("td", {}, L().total), h("td", {}, L().allWindows), ...cells(total)))))));
};

})();
