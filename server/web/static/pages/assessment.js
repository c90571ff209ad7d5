// The assessment people work with (A-PASS, A-REVIEW): a clerk's monthly verdict with its
// criteria, thresholds versions, inspectors' findings, sign-off and probation decisions
// (#/verdict/<clerk>/<month>); appeals and their resolution (#/appeals); the thresholds
// settings (#/settings); a clerk's own page (#/me). Uses app.js's helpers at render time.
"use strict";
(() => { // this page's names stay its own (other pages share the global scope)

Object.assign(window.I18N.zh, {
  navAppeals: "申诉", navSettings: "考核标准", navMe: "我的考核",
  verdictOf: "月度考核", criterion: "考核项", value: "实际", threshold: "标准", judged: "判定",
  thresholdsUsed: "所用标准版本", defaults: "系统默认", version: "版本",
  crit: { stand_on_call_rate: "叫号起立率", smile_at_greeting_rate: "迎客微笑率", farewell_stand_rate: "起立送别率",
          evaluation_coverage: "评价覆盖率", good_review_rate: "好评率", away_without_sign_min: "无牌离岗(分钟)",
          overdue_cases: "差评整改逾期", inspector_findings: "督查发现(不符合)",
          min_sessions: "最少服务人次", max_away_without_sign_min: "无牌离岗上限(分钟)", max_overdue_cases: "逾期差评上限",
          findings_count: "督查发现计入考核", max_findings_not_complied: "不符合发现上限", evidence_limit: "证据条数上限",
          too_broad_counts: "“笑容过度”计入评选（未经验证）" },
  cstatus: { pass: "达标", fail: "未达标", insufficient_observed_sessions: "可观测人次不足", insufficient_data: "样本不足",
             no_data: "无数据", not_counted: "不计入" },
  signOff: { provisional: "待审核", confirmed: "已确认", overridden: "已改判", recomputed: "已重算，待再审" },
  signOffTitle: "审核", computed: "系统计算", standsAs: "最终结果", decisions: "审核记录", decidedBy: "审核人",
  confirm: "确认", override: "改判", reason: "理由", save: "保存", overrideResult: "改判为",
  findings: "督查发现", recordFinding: "记录督查发现", findingKind: { patrol: "巡查", video_check: "双录抽查", survey: "第三方暗访" },
  outcome: { complied: "符合", not_complied: "不符合" }, clause: "条款", session: "服务", videoAt: "录像位置(秒)",
  attachmentRef: "附件引用（编号，非文件）", withdraw: "撤回", withdrawn: "已撤回", recordedBy: "记录人", evidence: "证据",
  probationTitle: "试用期", recommended: "系统建议", decided: "已决定", startProbation: "开始下月试用期",
  endProbation: "结束试用期", probationOutcome: { passed: "试用合格", returned_to_agency: "退回劳务派遣单位" },
  probationMonth: "试用月份", none: "无", appeals: "申诉", appealStatus: { open: "待处理", upheld: "已支持", rejected: "已驳回" },
  resolution: { corrected: "更正该项判定", not_counted: "该次服务不计入", overridden: "改判月度结果" },
  fileAppeal: "申诉", appealNote: "申诉理由", uphold: "支持", reject: "驳回", resolveNote: "处理意见",
  before: "申诉前", after: "处理后", events: "该次服务的事件", filedAt: "提交时间", monthVerdict: "月度结果",
  verdictKeys: { stood_on_call: "叫号起立", smiled_at_greeting: "迎客微笑", stood_at_farewell: "起立送别",
                 smiled_at_farewell: "送别微笑", greeted_first: "主动问候" },
  myRank: "我的微笑之星排名", rankOf: (r, n) => `第 ${r} 名（共 ${n} 人参评）`, notRanked: "人次不足，暂不参评",
  score: "得分", scope: "适用范围", fromMonth: "起始月份", city: "全市", saved: "已保存", history: "历史版本",
  mySessions: "我的服务记录", appealThis: "对此申诉", onlyOwn: "仅显示本人记录。", corrected: "已更正", notCounted: "不计入",
  noAppeals: "暂无申诉", settingsOnlyAdmin: "只有区管理员可以修改考核标准。", openAppeals: "待处理申诉",
  attachmentsTitle: "附件", findingKindTitle: "方式", outcomeTitle: "结论", newValue: "新值", values: "设定",
  verdictLink: "考核详情", observedAt: "发现时间", observedAtWhy: "未选服务时填写；不填即为现在",
});
Object.assign(window.I18N.en, {
  navAppeals: "Appeals", navSettings: "Thresholds", navMe: "My assessment",
  verdictOf: "Monthly assessment", criterion: "Criterion", value: "Value", threshold: "Threshold", judged: "Judged",
  thresholdsUsed: "Thresholds versions used", defaults: "server default", version: "Version",
  crit: { stand_on_call_rate: "Stand on call", smile_at_greeting_rate: "Smile at greeting", farewell_stand_rate: "Stand at farewell",
          evaluation_coverage: "Evaluation coverage", good_review_rate: "Good reviews", away_without_sign_min: "Away without sign (min)",
          overdue_cases: "Overdue bad-review cases", inspector_findings: "Inspectors' findings (not complied)",
          min_sessions: "Least sessions", max_away_without_sign_min: "Most minutes away without sign", max_overdue_cases: "Most overdue cases",
          findings_count: "Findings count in the verdict", max_findings_not_complied: "Most findings not complied", evidence_limit: "Evidence listed",
          too_broad_counts: "'Too broad' counts in the smile star (not validated)" },
  cstatus: { pass: "met", fail: "not met", insufficient_observed_sessions: "too few observed sessions", insufficient_data: "too few sessions",
             no_data: "no data", not_counted: "not counted" },
  signOff: { provisional: "awaiting sign-off", confirmed: "confirmed", overridden: "overridden", recomputed: "recomputed, to sign off again" },
  signOffTitle: "Sign-off", computed: "Computed", standsAs: "Stands as", decisions: "Decisions", decidedBy: "Decided by",
  confirm: "Confirm", override: "Override", reason: "Reason", save: "Save", overrideResult: "Override to",
  findings: "Inspectors' findings", recordFinding: "Record a finding", findingKind: { patrol: "patrol", video_check: "dual-recording check", survey: "mystery-shopper survey" },
  outcome: { complied: "complied", not_complied: "not complied" }, clause: "Clause", session: "Session", videoAt: "Video time (s)",
  attachmentRef: "Attachment reference (an id, not a file)", withdraw: "Withdraw", withdrawn: "withdrawn", recordedBy: "Recorded by", evidence: "Evidence",
  probationTitle: "Probation", recommended: "Recommended", decided: "Decided", startProbation: "Start probation next month",
  endProbation: "End probation", probationOutcome: { passed: "passed", returned_to_agency: "returned to the labour agency" },
  probationMonth: "Probation month", none: "none", appeals: "Appeals", appealStatus: { open: "open", upheld: "upheld", rejected: "rejected" },
  resolution: { corrected: "verdict corrected", not_counted: "session not counted", overridden: "monthly result overridden" },
  fileAppeal: "Appeal", appealNote: "Why", uphold: "Uphold", reject: "Reject", resolveNote: "Resolution note",
  before: "Before", after: "After", events: "The session's events", filedAt: "Filed", monthVerdict: "Monthly verdict",
  verdictKeys: { stood_on_call: "stood on call", smiled_at_greeting: "smiled at greeting", stood_at_farewell: "stood at farewell",
                 smiled_at_farewell: "smiled at farewell", greeted_first: "greeted first" },
  myRank: "My smile-star ranking", rankOf: (r, n) => `rank ${r} of ${n} ranked`, notRanked: "too few sessions to be ranked",
  score: "Score", scope: "Applies to", fromMonth: "From month", city: "whole city", saved: "saved", history: "Versions",
  mySessions: "My sessions", appealThis: "Appeal this", onlyOwn: "Only your own records are shown.", corrected: "corrected", notCounted: "not counted",
  noAppeals: "No appeals", settingsOnlyAdmin: "Only a district administrator changes thresholds.", openAppeals: "Open appeals",
  attachmentsTitle: "Attachments", findingKindTitle: "How", outcomeTitle: "Outcome", newValue: "New value", values: "Sets",
  verdictLink: "Assessment", observedAt: "Seen at", observedAtWhy: "Without a session: when it was seen; empty: now",
});

// the clauses inspectors record that no terminal observes (i18n.js names the others)
Object.assign(window.I18N.zh.clauseNames, { "G-GAZE": "目光亲切", "G-DRESS": "仪容着装", "G-VOICE": "语音语调", "W-BOTH-HANDS": "双手递接" });
Object.assign(window.I18N.en.clauseNames, { "G-GAZE": "friendly gaze", "G-DRESS": "dress", "G-VOICE": "voice", "W-BOTH-HANDS": "both hands" });

// ------------------------------------------------------------------ shared bits

const CLAUSES = ["W-CALL", "G-SMILE", "W-TWO-STANDS", "W-FAREWELL", "W-EVALUATE", "W-AWAY-SIGN", "F-RECEIVE",
  "W-BOTH-HANDS", "G-GAZE", "G-DRESS", "G-VOICE", "H-PRIORITY"];
const SESSION_VERDICTS = ["stood_on_call", "smiled_at_greeting", "stood_at_farewell", "smiled_at_farewell", "greeted_first"];
const crit = (name) => T().crit[name] || name;
const clauseName = (c) => `${T().clauseNames[c] || c} (${c})`;
const fmtValue = (c) => (c.value === null || c.value === undefined ? "—"
  : c.criterion.endsWith("_rate") || c.criterion === "evaluation_coverage" ? pct(c.value) : String(c.value));
const fmtLimit = (c) => (c.criterion.endsWith("_rate") || c.criterion === "evaluation_coverage" ? pct(c.threshold) : String(c.threshold));
const opt = (value, label, selected = false) => h("option", { value, selected }, label);
const select = (name, options, attrs = {}) => h("select", { name, "aria-label": T()[name] || name, ...attrs }, options);
const textIn = (name, attrs = {}) => h("input", { name, "aria-label": T()[name] || name, placeholder: T()[name] || name, ...attrs });
const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body) });

// A form whose submit runs ``run(data)``; errors show beside the button, then the page renders again.
function form(cls, fields, label, run) {
  const err = h("span", { class: "error", role: "status" });
  const f = h("form", { class: `admin-form ${cls}` }, fields, h("button", { type: "submit" }, label), err);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(f).entries());
    try { await run(data); render(); } catch (e) { err.textContent = String(e.message || e); }
  });
  return f;
}

function criteriaTable(v) {
  return stacked(h("table", { id: "criteria" },
    h("thead", {}, h("tr", {}, [T().criterion, T().value, T().threshold, T().judged, T().evidence].map((x) => h("th", {}, x)))),
    h("tbody", {}, v.criteria.map((c) => {
      const failure = v.failures.find((f) => f.criterion === c.criterion);
      const unseen = c.not_observed ? ` · ${c.not_observed} ${T().notObserved}` : "";
      const counts = c.criterion === "inspector_findings" ? ` (${c.findings}${c.withdrawn ? ` + ${c.withdrawn} ${T().withdrawn}` : ""})` : "";
      return h("tr", { class: c.status === "fail" ? "bad" : "", dataset: { criterion: c.criterion, status: c.status } },
        h("td", {}, crit(c.criterion)), h("td", {}, fmtValue(c), counts),
        h("td", {}, fmtLimit(c)), h("td", { class: c.status.startsWith("insufficient") || c.status === "not_counted" ? "unobserved" : "" }, T().cstatus[c.status] || c.status, unseen),
        h("td", { class: "audit-detail" }, failure ? `${failure.evidence.length}` : ""));
    }))));
}

// The clerk's monthly report, print-ready HTML and PDF (server/api/report_render.py).
const reportLinks = (clerkId, month) => h("span", { class: "exports" },
  h("a", { href: `/report/clerk/${enc(clerkId)}/${enc(month)}`, target: "_blank", rel: "noopener", class: "clerk-report" }, T().report),
  h("a", { href: `/report/clerk/${enc(clerkId)}/${enc(month)}.pdf`, target: "_blank", rel: "noopener" }, "PDF"));

function thresholdsLine(v) {
  const versions = v.thresholds_version.versions;
  return h("p", { class: "muted", id: "thresholds-used" }, `${T().thresholdsUsed}: `,
    versions.length ? versions.map((n) => `v${n}`).join(" + ") : T().defaults);
}

// ------------------------------------------------------------------ #/verdict/<clerk>/<month>

WW_PAGES.verdict = async (root, route) => {
  const clerkId = route[1];
  const month = route[2] || S.month;
  const [v, p, appeals, tl, clerks] = await Promise.all([
    api(`/api/assessment/${enc(clerkId)}?${qs({ month })}`),
    api(`/api/probation/${enc(clerkId)}?${qs({ month })}`),
    api(`/api/appeals?${qs({ month })}`),
    api(`/api/timeline?${qs({ period: month, clerk_id: clerkId })}`),
    api(`/api/clerks`),
  ]);
  const clerk = clerks.find((c) => c.clerk_id === clerkId);
  const st = v.standing;
  root.append(h("section", { class: "card", id: "verdict" },
    h("h2", {}, `${T().verdictOf} ${month} · ${clerk ? clerk.name : ""} (${clerkId})`,
      h("a", { href: `#/clerk/${enc(clerkId)}` }, T().timeline), reportLinks(clerkId, month)),
    h("div", { class: "kpis" },
      h("div", { class: "kpi", id: "stands" }, T().standsAs, h("b", { class: st.result === "fail" ? "bad" : "" }, T()[st.result] || st.result),
        h("span", { class: "sign-off", dataset: { signOff: st.sign_off } }, T().signOff[st.sign_off])),
      h("div", { class: "kpi" }, T().computed, h("b", {}, T()[v.result] || v.result)),
      h("div", { class: "kpi" }, T().sessions, h("b", {}, v.measures.sessions))),
    criteriaTable(v), thresholdsLine(v)));

  // sign-off: the decisions, and the form for who may decide
  const decisions = stacked(h("table", { id: "decisions" },
    h("thead", {}, h("tr", {}, [T().time, T().signOffTitle, T().standsAs, T().decidedBy, T().reason].map((x) => h("th", {}, x)))),
    h("tbody", {}, st.decisions.map((d) => h("tr", {},
    h("td", {}, fmtDateTime(d.decided_ms)), h("td", {}, d.action === "confirm" ? T().confirm : T().override),
    h("td", {}, `${T()[d.result] || d.result} (${T().computed}: ${T()[d.computed_result] || d.computed_result})`),
    h("td", {}, d.decided_by), h("td", {}, d.reason))))));
  const sign = h("section", { class: "card", id: "sign-off" }, h("h2", {}, T().signOffTitle), st.decisions.length ? decisions : h("p", {}, T().none));
  if (S.me.can.sign_off) {
    const result = select("overrideResult", ["pass", "fail", "insufficient_data"].map((r) => opt(r, T()[r])), { hidden: true });
    const action = select("action", [opt("confirm", T().confirm), opt("override", T().override)]);
    action.addEventListener("change", () => { result.hidden = action.value !== "override"; });
    sign.append(form("decision-form", [action, result, textIn("reason", { required: true, minlength: 3 })], T().save, (d) =>
      post(`/api/assessment/${enc(clerkId)}/${enc(month)}/decision`,
        { action: d.action, reason: d.reason, result: d.action === "override" ? d.overrideResult : null })));
  }
  root.append(sign);

  // findings
  const rows = v.findings.map((f) => h("tr", { class: f.withdrawn_ms ? "muted" : f.outcome === "not_complied" ? "bad" : "", dataset: { finding: f.finding_id } },
    h("td", {}, fmtDateTime(f.observed_ms)), h("td", {}, T().findingKind[f.kind]), h("td", {}, clauseName(f.criterion)),
    h("td", {}, T().outcome[f.outcome]), h("td", {}, f.note, f.video_ms !== null ? ` · ${T().videoAt} ${Math.round(f.video_ms / 1000)}` : ""),
    h("td", { class: "audit-detail" }, f.attachments.join(", ")), h("td", {}, f.recorded_by),
    h("td", {}, f.withdrawn_ms ? `${T().withdrawn}: ${f.withdrawn_reason}` : S.me.can.finding
      ? form("withdraw-form", [textIn("reason", { required: true, minlength: 3 })], T().withdraw, (d) => post(`/api/findings/${enc(f.finding_id)}/withdraw`, d)) : "")));
  const fsec = h("section", { class: "card", id: "findings" }, h("h2", {}, T().findings),
    rows.length ? stacked(h("table", {}, h("thead", {}, h("tr", {}, [T().time, T().findingKindTitle, T().clause, T().outcomeTitle,
      T().note, T().attachmentsTitle, T().recordedBy, ""].map((x) => h("th", {}, x)))), h("tbody", {}, rows))) : h("p", {}, T().none));
  if (S.me.can.finding) {
    const sessionSel = select("session", [opt("", "—"), ...tl.map((s) => opt(s.session_id, fmtDateTime(s.opened_ms)))]);
    fsec.append(h("h3", {}, T().recordFinding), form("finding-form", [
      select("kind", ["patrol", "video_check", "survey"].map((k) => opt(k, T().findingKind[k]))),
      select("clause", CLAUSES.map((c) => opt(c, clauseName(c)))),
      select("outcome", ["not_complied", "complied"].map((o) => opt(o, T().outcome[o]))),
      sessionSel, textIn("videoAt", { type: "number", min: 0, step: 1 }),
      textIn("observedAt", { type: "datetime-local", title: T().observedAtWhy }),
      textIn("note", { required: true }), textIn("attachmentRef"),
    ], T().save, (d) => post("/api/findings", {
      clerk_id: clerkId, kind: d.kind, criterion: d.clause, outcome: d.outcome, note: d.note,
      session_id: d.session || null, video_ms: d.videoAt ? Number(d.videoAt) * 1000 : null,
      // when it was seen: the session's time, else the time given, else now (the server's)
      observed_ms: d.session || !d.observedAt ? null : localToMs(d.observedAt),
      attachments: d.attachmentRef ? d.attachmentRef.split(/[,，\s]+/).filter(Boolean) : [],
    })));
  }
  root.append(fsec);

  // probation: the recommendation and what was decided
  const dec = p.decided;
  const psec = h("section", { class: "card", id: "probation" }, h("h2", {}, T().probationTitle),
    h("p", {}, `${T().recommended}: ${T().probationStates[p.status] || p.status}`),
    h("p", { id: "probation-decided" }, `${T().decided}: `, dec ? `${T().probationMonth} ${dec.month} · ${dec.started_by} ${fmtDateTime(dec.started_ms)}`
      + (dec.outcome ? ` → ${T().probationOutcome[dec.outcome]} · ${dec.ended_by} ${fmtDateTime(dec.ended_ms)}` : "") : T().none));
  if (S.me.can.probation) {
    const [y, m] = month.split("-").map(Number);
    const next = m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, "0")}`;
    if (st.result === "fail" && !(dec && dec.month === next)) {
      psec.append(form("probation-start", [textIn("reason", { required: true, minlength: 3 })], `${T().startProbation} (${next})`,
        (d) => post(`/api/probation/${enc(clerkId)}/${enc(next)}/decision`, { action: "start", reason: d.reason })));
    }
    if (dec && dec.month === month && !dec.outcome) {
      psec.append(form("probation-end", [select("outcome", ["passed", "returned_to_agency"].map((o) => opt(o, T().probationOutcome[o]))),
        textIn("reason", { required: true, minlength: 3 })], T().endProbation,
        (d) => post(`/api/probation/${enc(clerkId)}/${enc(month)}/decision`, { action: "end", outcome: d.outcome, reason: d.reason })));
    }
  }
  root.append(psec);
  root.append(appealsCard(appeals.filter((a) => a.clerk_id === clerkId)));
};

// ------------------------------------------------------------------ appeals

function appealsCard(list, title = T().appeals) {
  return h("section", { class: "card", id: "appeals" }, h("h2", {}, title),
    list.length ? stacked(h("table", {}, h("thead", {}, h("tr", {}, [T().filedAt, T().session, T().criterion, T().appealNote, T().status, T().before, T().after].map((x) => h("th", {}, x)))),
      h("tbody", {}, list.map((a) => h("tr", { dataset: { appeal: a.appeal_id, status: a.status } },
        h("td", {}, h("a", { href: `#/appeals/${enc(a.appeal_id)}` }, fmtDateTime(a.filed_ms))),
        h("td", {}, a.session_id ? a.session_id.slice(0, 8) : T().monthVerdict),
        h("td", {}, a.criterion ? T().verdictKeys[a.criterion] : a.month), h("td", {}, a.note),
        h("td", {}, T().appealStatus[a.status], a.resolution ? ` · ${T().resolution[a.resolution]}` : ""),
        h("td", {}, a.before ? `${T()[a.before.result] || a.before.result} (${T().signOff[a.before.sign_off]})` : ""),
        h("td", {}, a.after ? `${T()[a.after.result] || a.after.result} (${T().signOff[a.after.sign_off]})` : ""))))))
      : h("p", {}, T().noAppeals));
}

function eventLine(e) {
  const p = e.payload;
  const bits = e.kind === "session_summary"
    ? SESSION_VERDICTS.filter((k) => p[k] !== undefined && p[k] !== null).map((k) => `${T().verdictKeys[k]} ${(p.not_observed || []).includes(k) ? T().notObserved : p[k] ? "✓" : "✗"}`)
    : e.kind === "evaluated" ? [T().rating[p.rating] || p.rating] : [];
  return h("li", {}, `${fmtTime(e.ts_ms)} ${T().ev[e.kind] || e.kind} `, bits.join(" · "));
}

WW_PAGES.appeals = async (root, route) => {
  if (route[1]) {
    const a = await api(`/api/appeals/${enc(route[1])}`);
    const card = h("section", { class: "card", id: "appeal" },
      h("h2", {}, `${T().appeals} · ${a.clerk_id} · ${a.month}`, h("a", { href: `#/verdict/${enc(a.clerk_id)}/${enc(a.month)}` }, T().verdictLink)),
      h("p", {}, `${T().filedAt} ${fmtDateTime(a.filed_ms)} · ${a.criterion ? T().verdictKeys[a.criterion] : T().monthVerdict}: ${a.note}`),
      h("p", {}, `${T().status}: ${T().appealStatus[a.status]}`, a.resolution ? ` · ${T().resolution[a.resolution]} · ${a.resolved_by}: ${a.resolution_note}` : ""),
      a.before ? h("p", { id: "before-after" }, `${T().before}: ${T()[a.before.result] || a.before.result}`,
        a.after ? ` → ${T().after}: ${T()[a.after.result] || a.after.result} (${T().signOff[a.after.sign_off]})` : "") : "",
      a.session ? h("p", {}, `${T().session}: ${fmtDateTime(a.session.opened_ms)} – ${fmtTime(a.session.closed_ms)} · ${a.session.window}`,
        a.session.not_counted ? ` · ${T().notCounted}` : "") : "",
      a.events.length ? h("div", {}, h("h3", {}, T().events), h("ul", { class: "timeline", id: "appeal-events" }, a.events.map(eventLine))) : "",
      a.corrections.length ? h("p", { class: "ok" }, a.corrections.map((c) => `${T().corrected}: ${T().verdictKeys[c.column] || T().notCounted} ${c.before} → ${c.after} (${c.by})`).join("; ")) : "");
    if (a.status === "open" && S.me.can.resolve_appeal) {
      const how = a.session_id
        ? select("resolution", ["corrected", "not_counted"].map((r) => opt(r, T().resolution[r])))
        : select("overrideResult", ["pass", "fail", "insufficient_data"].map((r) => opt(r, T()[r])));
      const note = textIn("resolveNote", { required: true, minlength: 3 });
      card.append(form("resolve-form", [how, note], T().uphold, (d) => post(`/api/appeals/${enc(a.appeal_id)}/resolve`,
        { upheld: true, note: d.resolveNote, resolution: a.session_id ? d.resolution : null, result: a.session_id ? null : d.overrideResult })));
      card.append(form("reject-form", [textIn("resolveNote", { required: true, minlength: 3 })], T().reject,
        (d) => post(`/api/appeals/${enc(a.appeal_id)}/resolve`, { upheld: false, note: d.resolveNote })));
    }
    root.append(card);
    return;
  }
  const list = await api(`/api/appeals?${qs({ site: S.me.role === "clerk" ? undefined : S.site })}`);
  root.append(appealsCard(list.filter((a) => a.status === "open"), T().openAppeals));
  root.append(appealsCard(list.filter((a) => a.status !== "open"), T().appeals));
};

// ------------------------------------------------------------------ #/me: a clerk's own page

WW_PAGES.me = async (root) => {
  const clerkId = S.me.clerk_id;
  if (!clerkId) { location.hash = "#/assessment"; return; }
  const [v, ranking, tl, appeals] = await Promise.all([
    api(`/api/assessment/${enc(clerkId)}?${qs({ month: S.month })}`),
    api(`/api/ranking?${qs({ period: S.period })}`),
    api(`/api/timeline?${qs({ period: S.month })}`),
    api(`/api/appeals`),
  ]);
  const st = v.standing;
  root.append(h("section", { class: "card", id: "my-verdict" },
    h("h2", {}, `${T().verdictOf} ${S.month}`, h("a", { href: `#/verdict/${enc(clerkId)}/${enc(S.month)}` }, T().verdictLink),
      reportLinks(clerkId, S.month)),
    h("p", { class: "muted" }, T().onlyOwn),
    h("div", { class: "kpis" },
      h("div", { class: "kpi" }, T().standsAs, h("b", { class: st.result === "fail" ? "bad" : "" }, T()[st.result]), h("span", {}, T().signOff[st.sign_off])),
      h("div", { class: "kpi", id: "my-rank" }, T().myRank, ...(ranking[0] && ranking[0].rank
        ? [h("b", {}, `#${ranking[0].rank}`), h("span", {}, `${T().score} ${ranking[0].score.toFixed(3)}`)]
        : [h("b", {}, "—"), h("span", {}, T().notRanked)]))),
    criteriaTable(v), thresholdsLine(v),
    form("month-appeal-form", [textIn("appealNote", { required: true, minlength: 3 })], `${T().fileAppeal} · ${T().monthVerdict}`,
      (d) => post("/api/appeals", { month: S.month, note: d.appealNote }))));
  root.append(appealsCard(appeals));
  const open = new Set(appeals.filter((a) => a.status === "open").map((a) => `${a.session_id}/${a.criterion}`));
  const items = tl.slice().reverse().map((s) => {
    const seen = (k) => !s.not_observed[k];
    const missed = SESSION_VERDICTS.filter((k) => s.verdicts[k] === false && seen(k));
    const marks = SESSION_VERDICTS.filter((k) => s.verdicts[k] !== null && s.verdicts[k] !== undefined)
      .map((k) => h("span", { class: `step ${!seen(k) ? "unobserved" : s.verdicts[k] ? "" : "bad"}`, dataset: { verdict: k } },
        `${T().verdictKeys[k]} ${!seen(k) ? T().notObserved : s.verdicts[k] ? "✓" : "✗"}`));
    const appealable = missed.filter((k) => !open.has(`${s.session_id}/${k}`));
    return h("li", { dataset: { session: s.session_id } }, `${fmtDateTime(s.opened_ms)} · ${s.window} `, marks,
      s.not_counted ? h("span", { class: "unobserved" }, ` ${T().notCounted}`) : "",
      s.corrected.length ? h("span", { class: "ok" }, ` ${T().corrected}: ${s.corrected.map((k) => T().verdictKeys[k]).join(", ")}`) : "",
      appealable.length ? form("session-appeal", [select("criterion", appealable.map((k) => opt(k, T().verdictKeys[k]))),
        textIn("appealNote", { required: true, minlength: 3 })], T().appealThis,
        (d) => post("/api/appeals", { session_id: s.session_id, criterion: d.criterion, note: d.appealNote })) : "");
  });
  root.append(h("section", { class: "card" }, h("h2", {}, T().mySessions), h("ul", { class: "timeline", id: "my-sessions" }, items)));
};

// ------------------------------------------------------------------ #/settings: thresholds

const scopeName = (scope) => (scope === "all" ? T().city : scope.startsWith("site:")
  ? (S.units.find((u) => u.site === scope.slice(5)) || { name: scope.slice(5) }).name : scope.replace(/^district:/, ""));

const FIELD_KIND = { min_sessions: "int", max_overdue_cases: "int", max_findings_not_complied: "int", evidence_limit: "int",
  findings_count: "bool", too_broad_counts: "bool" };

WW_PAGES.settings = async (root) => {
  const t = await api(`/api/thresholds?${qs({ site: S.site, month: S.month })}`);
  const unit = S.units.find((u) => u.site === S.site);
  const names = Object.keys(t.thresholds);
  const shown = (name, value) => (FIELD_KIND[name] === "bool" ? (value ? "✓" : "✗")
    : name.endsWith("_rate") || name === "evaluation_coverage" ? pct(value) : String(value));
  const inputs = names.map((name) => {
    const kind = FIELD_KIND[name];
    if (kind === "bool") return h("select", { name, "aria-label": crit(name) }, opt("", "—"), opt("true", "✓"), opt("false", "✗"));
    const rate = !kind;
    return h("input", { name, "aria-label": crit(name), type: "number", step: rate ? "0.01" : "1", min: 0, max: rate && name !== "max_away_without_sign_min" ? 1 : undefined, placeholder: String(t.thresholds[name]) });
  });
  const table = stacked(h("table", { id: "thresholds" }, h("thead", {}, h("tr", {}, [T().criterion, `${S.month}`, T().version, T().defaults, T().newValue].map((x) => h("th", {}, x)))),
    h("tbody", {}, names.map((name, i) => h("tr", { dataset: { field: name } },
      h("td", {}, crit(name)), h("td", {}, shown(name, t.thresholds[name])),
      h("td", {}, t.source[name] ? `v${t.source[name]}` : T().defaults), h("td", {}, shown(name, t.defaults[name])),
      h("td", {}, S.me.can.thresholds ? inputs[i] : ""))))));
  const card = h("section", { class: "card", id: "settings" }, h("h2", {}, `${T().navSettings} · ${unit ? unit.name : S.site}`), table);
  if (S.me.can.thresholds) {
    const scopes = [[`site:${S.site}`, unit ? unit.name : S.site], ...(unit ? [[`district:${unit.district}`, unit.district]] : []),
      ...(S.me.scope === "all" ? [["all", T().city]] : [])];
    const f = form("thresholds-form", [select("scope", scopes.map(([v, l]) => opt(v, `${T().scope}: ${l}`))),
      textIn("fromMonth", { type: "month", value: S.month, required: true }), textIn("reason", { required: true, minlength: 3 })], T().save, (d) => {
      const values = {};
      names.forEach((name, i) => {
        const raw = inputs[i].value;
        if (raw === "") return;
        values[name] = FIELD_KIND[name] === "bool" ? raw === "true" : Number(raw);
      });
      return post("/api/thresholds", { scope: d.scope, from_month: d.fromMonth, values, reason: d.reason });
    });
    card.append(f);
  } else card.append(h("p", { class: "muted" }, T().settingsOnlyAdmin));
  root.append(card);
  root.append(h("section", { class: "card", id: "threshold-history" }, h("h2", {}, T().history),
    t.history.length ? stacked(h("table", {}, h("thead", {}, h("tr", {}, [T().version, T().scope, T().fromMonth, T().values, T().reason, T().recordedBy]
      .map((x) => h("th", {}, x)))), h("tbody", {}, t.history.map((v) => h("tr", {}, h("td", {}, `v${v.version}`), h("td", {}, scopeName(v.scope)),
      h("td", {}, v.from_month), h("td", {}, Object.entries(v.values).map(([k, x]) => `${crit(k)} ${shown(k, x)}`).join("; ")),
      h("td", {}, v.reason), h("td", {}, `${v.created_by} ${fmtDateTime(v.created_ms)}`)))))) : h("p", {}, T().none)));
};
})();
