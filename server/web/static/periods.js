// The header's period: the month picked (an <input type=month>) and whether the pages
// show that month, its quarter or its year. The API's periods: "2026-11", "2026-Q4",
// "2026". A month's verdicts stay the picked month's, whatever the span shown.
"use strict";
window.WW_PERIOD = (kind, month) => {
  const [year, m] = month.split("-");
  if (kind === "year") return year;
  if (kind === "quarter") return `${year}-Q${Math.ceil(Number(m) / 3)}`;
  return month;
};
Object.assign(window.I18N.zh, { periodKind: "统计周期", periodMonth: "按月", periodQuarter: "按季度", periodYear: "按年" });
Object.assign(window.I18N.en, { periodKind: "Period", periodMonth: "Month", periodQuarter: "Quarter", periodYear: "Year" });
