// EstateDesk live dashboard for the head-office quality manager, a screen of the staff
// console (/dashboard): signed in the same way (the console's session, no token in the
// address). The figures come from /v1/dashboard/summary and then from the server-sent
// event stream /v1/dashboard/stream (read with fetch, so the token travels in the
// Authorization header), which pushes a fresh summary within a second of every change.
// Charts are Apache ECharts (tooltips, legends, zoom, save as image). Every time is
// shown in the estate's zone (the summary names it), never the browser's.
import * as echarts from 'echarts/core'
import { BarChart, GaugeChart } from 'echarts/charts'
import { DataZoomComponent, GridComponent, LegendComponent, ToolboxComponent, TooltipComponent } from 'echarts/components'
import { CanvasRenderer } from 'echarts/renderers'
import { openStream } from '../sse.js'
import { inZone } from '../time.js'

echarts.use([BarChart, GaugeChart, GridComponent, TooltipComponent, LegendComponent, DataZoomComponent,
  ToolboxComponent, CanvasRenderer])

const COLORS = { open: '#2f6db5', overdue: '#c8382c', closed: '#2e8b57' }

/** Starts the dashboard in the page's elements; `env` gives { token, lang, setLang(lang),
 * signedOut(reason) }. Returns a function that stops it (stream, timers, charts). */
export function startDashboard(env) {
  const I18N = {
    zh: {
      title: "品质监控看板", need_token: "请输入访问令牌(estatedesk token)。", open: "未结",
      token_rejected: "令牌无效或已过期,请重新输入。", live: "实时", offline: "重新连接中…",
      updated: "更新于", estates: "管理处", estate: "管理处", all_estates: "全部管理处",
      today_opened: "今日受理", overdue: "超时", breaches_month: "本月超时次数", on_time_rate: "及时率",
      callback_rate: "回访率", satisfaction: "满意度", open_by_estate: "各管理处未结与超时",
      daily_intake: "近 14 天受理与关闭", month_rates: "本月回访率、满意度与及时率", departments: "部门",
      department: "部门", open_by_department: "各部门未结与超时", tickets: "工单", closed: "已关闭",
      all: "全部", report_html: "月报(打印)", report_xlsx: "月报 Excel", form_number: "单号",
      kind: "类别", category: "原因类别", building: "楼栋", accepted_at: "受理时间", round: "轮次",
      state: "状态", alerts: "超时与升级(实时)", opened: "受理", no_data: "暂无数据",
      no_tickets: "没有符合条件的工单", state_open: "处理中", state_overdue: "超时", state_closed: "已关闭",
      sla_breached: "超时", escalated: "升级", corrective_action_suggested: "重复问题",
      lang_toggle: "English", unassigned: "未派单", clock: "时限", save_image: "保存为图片", back: "返回控制台",
    },
    en: {
      title: "Quality dashboard", need_token: "Enter an access token (estatedesk token).", open: "Open",
      token_rejected: "The token was refused or has expired; enter another.", live: "Live",
      offline: "Reconnecting…", updated: "Updated", estates: "Estates", estate: "Estate",
      all_estates: "All estates", today_opened: "Received today", overdue: "Overdue",
      breaches_month: "Breaches this month", on_time_rate: "On-time rate", callback_rate: "Callback rate",
      satisfaction: "Satisfaction", open_by_estate: "Open and overdue forms by estate",
      daily_intake: "Received and closed, last 14 days", month_rates: "Callback rate, satisfaction and on-time rate this month",
      departments: "Departments", department: "Department", open_by_department: "Open and overdue by department",
      tickets: "Tickets", closed: "Closed", all: "All", report_html: "Monthly report (print)",
      report_xlsx: "Monthly report (Excel)", form_number: "Form", kind: "Kind", category: "Category",
      building: "Building", accepted_at: "Received", round: "Round", state: "State",
      alerts: "Breaches and escalations (live)", opened: "Received", no_data: "No data yet",
      no_tickets: "No tickets match", state_open: "In hand", state_overdue: "Overdue", state_closed: "Closed",
      sla_breached: "Breach", escalated: "Escalation", corrective_action_suggested: "Repeat problem",
      lang_toggle: "中文", unassigned: "Not routed", clock: "Clock", save_image: "Save as image", back: "Back to the console",
    },
  };

  // Codes of the domain (kinds, departments, clocks, rungs) in English; Chinese names of
  // departments come from the company directory.
  const NAMES = {
    zh: {
      inquiry: "咨询", suggestion: "建议", complaint: "投诉", praise: "表扬", repair: "报修",
      special_service: "特约服务", situation_report: "情况反映", activity: "社区活动",
      acknowledge: "签收", arrival: "到场", repair_slip_return: "维修单回交", sign_back: "回单",
      reply: "答复", tracking: "跟踪控制", progress_update: "进展反馈", invalid_complaint_notice: "无效投诉告知",
      department_head: "部门负责人", estate_director: "物业中心主任", company_general_management: "公司综合管理部",
      general_manager: "总经理", unassigned: "未派单",
    },
    en: {
      inquiry: "Inquiry", suggestion: "Suggestion", complaint: "Complaint", praise: "Praise", repair: "Repair",
      special_service: "Special service", situation_report: "Situation report", activity: "Activity",
      engineering: "Engineering", security: "Security", cleaning: "Cleaning", greening: "Greening",
      finance: "Finance", customer_service: "Customer service",
      acknowledge: "Acknowledge", arrival: "Arrival", repair_slip_return: "Repair slip return", sign_back: "Sign-back",
      reply: "Reply", tracking: "Tracking", progress_update: "Progress update", invalid_complaint_notice: "Invalid-complaint notice",
      department_head: "Department head", estate_director: "Estate director",
      company_general_management: "General management", general_manager: "General manager", unassigned: "Not routed",
    },
  };

  const state = {
    lang: env.lang, token: env.token, summary: null, previous: null, stream: null,
    view: { estate: null, department: null }, ticketsTimer: null, seenAlerts: new Set(), charts: new Map(),
  };

  const $ = (id) => document.getElementById(id);
  const t = (key) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.zh[key] || key;
  const codeName = (code) => (NAMES[state.lang] && NAMES[state.lang][code]) || code;

  function departmentName(estate, code) {
    if (state.lang === "en" && NAMES.en[code]) return NAMES.en[code];
    const found = estate && estate.departments.find((d) => d.code === code);
    return (found && found.name) || codeName(code);
  }

  function pct(value) { return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%"; }

  // "MM-DD HH:mm:ss" on the wall clock of `zone` (the estate's; else as the API gave it).
  function fmtTime(iso, zone) {
    if (!iso) return "";
    return (zone ? inZone(iso, zone) : String(iso).slice(0, 19)).slice(5, 19).replace("T", " ");
  }

  function node(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  // --- API and stream ----------------------------------------------------------------------------

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
    if (response.status === 401) {
      const body = await response.json().catch(() => ({}));
      stop();
      env.signedOut(state.lang === "zh" ? body.error_zh || body.error : body.error);
      throw new Error("unauthorised");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || response.statusText);
    }
    return response;
  }

  function setStatus(live) {
    const el = $("status");
    el.className = "status " + (live ? "live" : "offline");
    el.textContent = live ? t("live") : t("offline");
  }

  function connect() {
    if (state.stream) state.stream.close();
    state.stream = openStream("/v1/dashboard/stream", state.token, {
      open: () => setStatus(true),
      error: () => setStatus(false),
      summary: (data) => { setStatus(true); render(JSON.parse(data)); },
      // The server ends the stream when the token expires, is signed out or its staff
      // member leaves the directory: stop and ask for a sign-in again.
      end: (data) => { setStatus(false); stop(); env.signedOut(JSON.parse(data).reason); },
      refused: (status, body) => { stop(); env.signedOut(body.error_zh && state.lang === "zh" ? body.error_zh : body.error); },
    });
  }

  // --- rendering --------------------------------------------------------------------------------

  function applyLang() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = "EstateDesk " + t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    $("lang").textContent = t("lang_toggle");
    setStatus($("status").classList.contains("live"));
  }

  function currentEstate() {
    const s = state.summary;
    return s && state.view.estate ? s.estates.find((e) => e.code === state.view.estate) : null;
  }

  function previousEstate(code) {
    return state.previous ? state.previous.estates.find((e) => e.code === code) : null;
  }

  function render(summary) {
    if (summary) { state.previous = state.summary; state.summary = summary; }
    const s = state.summary;
    if (!s) return;
    const estate = currentEstate();
    $("updated").textContent = `${t("updated")} ${fmtTime(s.generated_at, estate && estate.timezone)}`;
    renderCrumbs();
    $("company-view").hidden = Boolean(state.view.estate);
    $("estate-view").hidden = !state.view.estate;
    if (estate) {
      renderKpis(estate, estate.month, previousEstate(estate.code));
      renderEstate(estate);
      if (summary) scheduleTickets();
    } else {
      renderKpis(s.totals, s.totals.month, state.previous && state.previous.totals);
      renderCompany(s);
    }
    renderAlerts(s);
  }

  function renderCrumbs() {
    const crumbs = $("crumbs");
    crumbs.replaceChildren(node("a", { href: "#/" }, t("all_estates")));
    const estate = currentEstate();
    if (state.view.estate) {
      crumbs.append(node("span", { class: "sep" }, "›"),
        node("a", { href: `#/estate/${encodeURIComponent(state.view.estate)}` }, estate ? estate.name : state.view.estate));
    }
    if (state.view.department) {
      crumbs.append(node("span", { class: "sep" }, "›"), node("span", {}, departmentName(estate, state.view.department)));
    }
  }

  function renderKpis(current, month, previous) {
    const items = [
      ["today_opened", current.today_opened, false],
      ["open", current.open, false],
      ["overdue", current.overdue, current.overdue > 0],
      ["breaches_month", month.clocks_breached, month.clocks_breached > 0],
      ["on_time_rate", pct(month.on_time_rate), false],
      ["callback_rate", pct(month.callback_rate), false],
      ["satisfaction", pct(month.satisfaction_rate), false],
    ];
    $("kpis").replaceChildren(...items.map(([key, value, bad]) => {
      const changed = previous && ["today_opened", "open", "overdue"].includes(key) && previous[key] !== value;
      return node("div", { class: "kpi" + (bad ? " bad" : ""), "data-testid": `kpi-${key}` },
        node("div", { class: "label" }, t(key)),
        node("div", { class: "value" + (changed ? " flash" : "") }, value));
    }));
  }

  function renderCompany(s) {
    const estates = [...s.estates].sort((a, b) => b.overdue - a.overdue || b.open - a.open || a.code.localeCompare(b.code));
    const body = $("estates").tBodies[0];
    body.replaceChildren(...estates.map((e) => {
      const before = previousEstate(e.code);
      const cell = (field, value, extra = "") => {
        const changed = before && field in before && before[field] !== e[field];
        return node("td", { class: "num" + extra + (changed ? " flash" : ""), dataset: { field } }, value);
      };
      return node("tr", { class: "clickable", dataset: { estate: e.code }, onclick: () => { location.hash = `#/estate/${encodeURIComponent(e.code)}`; } },
        node("td", {}, e.name),
        cell("today_opened", e.today_opened),
        cell("open", e.open),
        cell("overdue", e.overdue, e.overdue > 0 ? " bad" : ""),
        node("td", { class: "num", dataset: { field: "breaches" } }, e.month.clocks_breached),
        node("td", { class: "num" }, pct(e.month.on_time_rate)),
        node("td", { class: "num", dataset: { field: "callback_rate" } }, pct(e.month.callback_rate)),
        node("td", { class: "num", dataset: { field: "satisfaction" } }, pct(e.month.satisfaction_rate)));
    }));
    const top = estates.filter((e) => e.open || e.overdue).slice(0, 15);
    barChart("chart-estates", estates.map((e) => ({ label: e.name, values: [e.open, e.overdue] })));
    columnChart("chart-daily", s.daily_intake);
    gauges("chart-rates", s.totals.month);
  }

  function renderEstate(estate) {
    const body = $("departments").tBodies[0];
    const before = previousEstate(estate.code);
    body.replaceChildren(...estate.departments.map((d) => {
      const old = before && before.departments.find((x) => x.code === d.code);
      const flash = (field) => (old && old[field] !== d[field] ? " flash" : "");
      return node("tr", { class: "clickable", dataset: { department: d.code },
        onclick: () => { location.hash = `#/estate/${encodeURIComponent(estate.code)}/${encodeURIComponent(d.code)}`; } },
        node("td", {}, departmentName(estate, d.code)),
        node("td", { class: "num" + flash("open"), dataset: { field: "open" } }, d.open),
        node("td", { class: "num" + flash("overdue") + (d.overdue ? " bad" : ""), dataset: { field: "overdue" } }, d.overdue));
    }));
    barChart("chart-departments", estate.departments.map((d) => ({ label: departmentName(estate, d.code), values: [d.open, d.overdue] })));
  }

  function scheduleTickets() {
    clearTimeout(state.ticketsTimer);
    state.ticketsTimer = setTimeout(loadTickets, 250);
  }

  async function loadTickets() {
    const code = state.view.estate;
    if (!code) return;
    const params = new URLSearchParams({ status: $("status-filter").value });
    if (state.view.department) params.set("department", state.view.department);
    let data;
    try {
      data = await (await api(`/v1/estates/${encodeURIComponent(code)}/tickets?${params}`)).json();
    } catch (error) {
      return;
    }
    if (code !== state.view.estate) return;  // the user moved on meanwhile
    const estate = currentEstate();
    const body = $("tickets").tBodies[0];
    if (!data.tickets.length) {
      body.replaceChildren(node("tr", {}, node("td", { colspan: "8" }, t("no_tickets"))));
      return;
    }
    body.replaceChildren(...data.tickets.map((ticket) => {
      const stateKey = ticket.state === "closed" ? "state_closed" : ticket.overdue ? "state_overdue" : "state_open";
      return node("tr", { dataset: { ticket: ticket.ticket_id } },
        node("td", {}, ticket.form_number || ticket.ticket_id.slice(0, 8)),
        node("td", {}, codeName(ticket.kind)),
        node("td", {}, ticket.category || ""),
        node("td", {}, ticket.building || ""),
        node("td", {}, ticket.departments.map((d) => departmentName(estate, d)).join("、") || t("unassigned")),
        node("td", {}, fmtTime(ticket.accepted_at, estate && estate.timezone)),
        node("td", { class: "num" }, ticket.round),
        node("td", { class: ticket.overdue && ticket.state !== "closed" ? "bad" : "" }, t(stateKey)));
    }));
  }

  async function openReport(format) {
    const code = state.view.estate;
    if (!code || !state.summary) return;
    const response = await api(`/v1/estates/${encodeURIComponent(code)}/reports/monthly/${state.summary.month}.${format}?lang=${state.lang}`);
    const url = URL.createObjectURL(await response.blob());
    if (format === "html") {
      window.open(url, "_blank");
    } else {
      node("a", { href: url, download: `${code}-${state.summary.month}.xlsx` }).click();
    }
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function renderAlerts(s) {
    const names = Object.fromEntries(s.estates.map((e) => [e.code, e]));
    const list = $("alerts");
    if (!s.alerts.length) {
      list.replaceChildren(node("li", {}, t("no_data")));
      return;
    }
    const first = state.seenAlerts.size === 0;
    list.replaceChildren(...s.alerts.map((a) => {
      const key = [a.estate, a.ticket_id, a.event, a.clock, a.at].join("|");
      const isNew = !first && !state.seenAlerts.has(key);
      state.seenAlerts.add(key);
      const estate = names[a.estate];
      const detail = [a.clock ? codeName(a.clock) : null, a.rung ? codeName(a.rung) : null,
        a.department ? departmentName(estate, a.department) : null].filter(Boolean).join(" · ");
      return node("li", { class: isNew ? "new" : "", dataset: { event: a.event } },
        node("span", { class: "when" }, fmtTime(a.at, estate && estate.timezone)),
        node("span", { class: "what" }, t(a.event)),
        node("span", {}, estate ? estate.name : a.estate),
        node("a", { href: `#/estate/${encodeURIComponent(a.estate)}` }, a.form_number || a.ticket_id.slice(0, 8)),
        node("span", {}, detail));
    }));
  }

  // --- charts (Apache ECharts) ---------------------------------------------------------------------

  // One chart per element, made again when the language changes (ECharts' own texts).
  function chart(id) {
    const el = $(id);
    let instance = state.charts.get(id);
    if (instance && instance.getDom() !== el) { instance.dispose(); instance = null; }
    if (!instance) {
      instance = echarts.init(el, null, { locale: state.lang === "zh" ? "ZH" : "EN" });
      state.charts.set(id, instance);
    }
    return instance;
  }

  function toolbox(name) {
    return { right: 8, feature: { saveAsImage: { name, title: t("save_image"), pixelRatio: 2 } } };
  }

  // Horizontal bars, open and overdue per row; a zoom bar when there are many rows.
  function barChart(id, items) {
    const many = items.length > 12;
    $(id).style.height = Math.max(180, Math.min(items.length, 12) * 34 + 80) + "px";
    const instance = chart(id);
    instance.resize();
    instance.setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0, left: 0, data: [t("open"), t("overdue")] },
      toolbox: toolbox(id),
      grid: { left: 8, right: many ? 48 : 24, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: items.map((i) => i.label),
        axisLabel: { width: 140, overflow: "truncate" } },
      dataZoom: many ? [{ type: "slider", yAxisIndex: 0, right: 8, width: 16, startValue: 0, endValue: 11 },
        { type: "inside", yAxisIndex: 0 }] : [],
      series: [
        { name: t("open"), type: "bar", data: items.map((i) => i.values[0]), itemStyle: { color: COLORS.open },
          label: { show: true, position: "right" } },
        { name: t("overdue"), type: "bar", data: items.map((i) => i.values[1]), itemStyle: { color: COLORS.overdue },
          label: { show: true, position: "right" } },
      ],
      graphic: [],
    }, { notMerge: true });
  }

  // Received and closed per day, zoomable along the days.
  function columnChart(id, days) {
    const instance = chart(id);
    instance.setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0, left: 0, data: [t("opened"), t("closed")] },
      toolbox: toolbox(id),
      grid: { left: 8, right: 16, top: 32, bottom: 40, containLabel: true },
      xAxis: { type: "category", data: days.map((d) => d.day.slice(5)) },
      yAxis: { type: "value", minInterval: 1 },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 16, bottom: 4 }],
      series: [
        { name: t("opened"), type: "bar", data: days.map((d) => d.opened), itemStyle: { color: COLORS.open } },
        { name: t("closed"), type: "bar", data: days.map((d) => d.closed), itemStyle: { color: COLORS.closed } },
      ],
    }, { notMerge: true });
  }

  // One gauge per rate (0–1); "—" when there is nothing to rate yet.
  function gauges(id, month) {
    const entries = [["callback_rate", month.callback_rate], ["satisfaction", month.satisfaction_rate], ["on_time_rate", month.on_time_rate]];
    const color = (v) => (v === null || v === undefined ? "#c0c4cc" : v >= 0.9 ? COLORS.closed : v >= 0.7 ? "#d48a12" : COLORS.overdue);
    chart(id).setOption({
      tooltip: { formatter: (p) => `${p.name}: ${pct(p.data.rate)}` },
      toolbox: toolbox(id),
      series: entries.map(([key, value], i) => ({
        type: "gauge", center: [`${17 + i * 33}%`, "55%"], radius: "70%", min: 0, max: 100,
        startAngle: 90, endAngle: -270, pointer: { show: false }, splitLine: { show: false }, axisTick: { show: false },
        axisLabel: { show: false }, progress: { show: true, width: 10, itemStyle: { color: color(value) } },
        axisLine: { lineStyle: { width: 10, color: [[1, "#e6ebf1"]] } },
        title: { offsetCenter: [0, "115%"], fontSize: 12 },
        detail: { offsetCenter: [0, 0], fontSize: 18, formatter: () => pct(value) },
        data: [{ name: t(key), value: value === null || value === undefined ? 0 : value * 100, rate: value }],
      })),
    }, { notMerge: true });
  }

  // --- navigation -----------------------------------------------------------------------------------

  function route() {
    const match = location.hash.match(/^#\/estate\/([^/]+)(?:\/([^/]+))?/);
    state.view = match
      ? { estate: decodeURIComponent(match[1]), department: match[2] ? decodeURIComponent(match[2]) : null }
      : { estate: null, department: null };
    state.previous = null;
    render();
    if (state.view.estate) loadTickets();
  }

  function changeLanguage() {
    state.lang = state.lang === "zh" ? "en" : "zh";
    env.setLang(state.lang);
    for (const instance of state.charts.values()) instance.dispose();
    state.charts.clear();
    applyLang();
    render();
    if (state.view.estate) loadTickets();
  }

  let resizing = null;
  const onResize = () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { for (const instance of state.charts.values()) instance.resize(); }, 150);
  };
  const onFilter = () => loadTickets();
  const onHtml = () => openReport("html");
  const onXlsx = () => openReport("xlsx");
  let stopped = false;

  function stop() {
    if (stopped) return;
    stopped = true;
    if (state.stream) state.stream.close();
    clearTimeout(state.ticketsTimer);
    window.removeEventListener("hashchange", route);
    window.removeEventListener("resize", onResize);
    for (const instance of state.charts.values()) instance.dispose();
    state.charts.clear();
  }

  async function start() {
    applyLang();
    $("lang").addEventListener("click", changeLanguage);
    $("status-filter").addEventListener("change", onFilter);
    $("report-html").addEventListener("click", onHtml);
    $("report-xlsx").addEventListener("click", onXlsx);
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", onResize);
    try {
      state.summary = await (await api("/v1/dashboard/summary")).json();
    } catch (error) {
      if (!stopped) $("updated").textContent = String(error.message || error);
      return;
    }
    if (stopped) return;
    $("qd-main").hidden = false;
    route();
    connect();
  }

  start();
  return stop;
}
