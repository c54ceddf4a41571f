// EstateDesk live dashboard for the head-office quality manager.
// Plain JS, no libraries: the figures come from /v1/dashboard/summary and then from the
// server-sent event stream /v1/dashboard/stream, which pushes a fresh summary within a
// second of every change. Charts are drawn as inline SVG.
"use strict";

(() => {
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
      lang_toggle: "English", unassigned: "未派单", clock: "时限",
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
      lang_toggle: "中文", unassigned: "Not routed", clock: "Clock",
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
    lang: localStorage.getItem("estatedesk.lang") || "zh",
    token: null, summary: null, previous: null, source: null,
    view: { estate: null, department: null }, ticketsTimer: null, seenAlerts: new Set(),
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

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getMonth() + 1}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
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

  const SVG = "http://www.w3.org/2000/svg";
  // Charts are drawn one SVG unit to one pixel, as wide as their card, so labels keep
  // their size however many rows there are.
  function canvas(target, height, minWidth = 320) {
    const width = Math.max(minWidth, Math.floor(target.clientWidth || 640));
    return [svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" }), width];
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // --- token and API ---------------------------------------------------------------------------

  function readToken() {
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get("token");
    const lang = url.searchParams.get("lang");
    if (lang === "zh" || lang === "en") { state.lang = lang; localStorage.setItem("estatedesk.lang", lang); }
    if (fromUrl) {
      sessionStorage.setItem("estatedesk.token", fromUrl);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);  // keep it out of history
    }
    return sessionStorage.getItem("estatedesk.token");
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
    if (response.status === 401) {
      showLogin(t("token_rejected"));
      throw new Error("unauthorised");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || response.statusText);
    }
    return response;
  }

  function showLogin(message) {
    if (state.source) { state.source.close(); state.source = null; }
    sessionStorage.removeItem("estatedesk.token");
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  function setStatus(live) {
    const el = $("status");
    el.className = "status " + (live ? "live" : "offline");
    el.textContent = live ? t("live") : t("offline");
  }

  function connect() {
    if (state.source) state.source.close();
    const source = new EventSource("/v1/dashboard/stream?token=" + encodeURIComponent(state.token));
    source.addEventListener("open", () => setStatus(true));
    source.addEventListener("error", () => setStatus(false));
    source.addEventListener("summary", (ev) => { setStatus(true); render(JSON.parse(ev.data)); });
    source.addEventListener("alert", () => { /* the next summary carries it; nothing to do */ });
    // The server ends the stream when the token expires, is signed out or its staff member
    // leaves the directory: stop reconnecting and ask for a sign-in again.
    source.addEventListener("end", (ev) => {
      source.close();
      setStatus(false);
      sessionStorage.removeItem("estatedesk.token");
      showLogin(JSON.parse(ev.data).reason);
    });
    state.source = source;
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
    $("updated").textContent = `${t("updated")} ${fmtTime(s.generated_at)}`;
    renderCrumbs();
    const estate = currentEstate();
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
    barChart($("chart-estates"), top.map((e) => ({ label: e.name, values: [e.open, e.overdue] })),
      [["bar-open", t("open")], ["bar-overdue", t("overdue")]]);
    columnChart($("chart-daily"), s.daily_intake);
    rings($("chart-rates"), s.totals.month);
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
    barChart($("chart-departments"), estate.departments.map((d) => ({ label: departmentName(estate, d.code), values: [d.open, d.overdue] })),
      [["bar-open", t("open")], ["bar-overdue", t("overdue")]]);
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
        node("td", {}, fmtTime(ticket.accepted_at)),
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
        node("span", { class: "when" }, fmtTime(a.at)),
        node("span", { class: "what" }, t(a.event)),
        node("span", {}, estate ? estate.name : a.estate),
        node("a", { href: `#/estate/${encodeURIComponent(a.estate)}` }, a.form_number || a.ticket_id.slice(0, 8)),
        node("span", {}, detail));
    }));
  }

  // --- charts (inline SVG) -------------------------------------------------------------------------

  function legend(entries) {
    return node("div", { class: "legend" }, ...entries.map(([cls, label]) =>
      node("span", {}, node("i", { class: cls, style: `background: var(--${cls === "bar-open" ? "blue" : cls === "bar-overdue" ? "red" : "green"})` }), label)));
  }

  function emptyChart(target) {
    const [chart] = canvas(target, 40);
    chart.append(svg("text", { x: 8, y: 24, class: "empty" }, t("no_data")));
    target.replaceChildren(chart);
  }

  // Horizontal bars: one row per item, one bar per value.
  function barChart(target, items, series) {
    if (!items.length) return emptyChart(target);
    const labelWidth = 150, row = 14 * series.length + 10;
    const max = Math.max(1, ...items.flatMap((i) => i.values));
    const [chart, width] = canvas(target, items.length * row + 6);
    items.forEach((item, i) => {
      const y = i * row + 4;
      const label = item.label.length > 14 ? item.label.slice(0, 13) + "…" : item.label;
      chart.append(svg("text", { x: 0, y: y + row / 2 + 2 }, label));
      item.values.forEach((value, j) => {
        const w = ((width - labelWidth - 40) * value) / max;
        const by = y + j * 14;
        chart.append(svg("rect", { x: labelWidth, y: by, width: Math.max(w, value ? 2 : 0), height: 11, class: series[j][0] }));
        chart.append(svg("text", { x: labelWidth + w + 4, y: by + 9 }, String(value)));
      });
    });
    target.replaceChildren(chart, legend(series));
  }

  // Columns per day: received and closed side by side.
  function columnChart(target, days) {
    if (!days.length) return emptyChart(target);
    const height = 170, bottom = 20, top = 14;
    const max = Math.max(1, ...days.flatMap((d) => [d.opened, d.closed]));
    const [chart, width] = canvas(target, height);
    const step = width / days.length;
    days.forEach((d, i) => {
      const x = i * step;
      [["opened", "bar-open"], ["closed", "bar-closed"]].forEach(([field, cls], j) => {
        const h = ((height - bottom - top) * d[field]) / max;
        chart.append(svg("rect", { x: x + 3 + j * (step / 2 - 3), y: height - bottom - h, width: step / 2 - 4, height: h, class: cls }));
      });
      if (d.opened) chart.append(svg("text", { x: x + 3, y: height - bottom - ((height - bottom - top) * d.opened) / max - 2 }, String(d.opened)));
      if (i % 2 === days.length % 2 || days.length < 8) chart.append(svg("text", { x: x + 2, y: height - 5 }, d.day.slice(5)));
    });
    target.replaceChildren(chart, legend([["bar-open", t("opened")], ["bar-closed", t("closed")]]));
  }

  // Rings for rates (0–1); "—" when there is nothing to rate yet.
  function rings(target, month) {
    const entries = [["callback_rate", month.callback_rate], ["satisfaction", month.satisfaction_rate], ["on_time_rate", month.on_time_rate]];
    const [chart, width] = canvas(target, 130);
    const slot = width / entries.length;
    entries.forEach(([key, value], i) => {
      const cx = slot * i + slot / 2, cy = 55, r = 40, circumference = 2 * Math.PI * r;
      chart.append(svg("circle", { cx, cy, r, fill: "none", stroke: "#e6ebf1", "stroke-width": 10 }));
      if (value !== null && value !== undefined) {
        const color = value >= 0.9 ? "#2e8b57" : value >= 0.7 ? "#d48a12" : "#c8382c";
        chart.append(svg("circle", { cx, cy, r, fill: "none", stroke: color, "stroke-width": 10,
          "stroke-dasharray": `${circumference * value} ${circumference}`, transform: `rotate(-90 ${cx} ${cy})` }));
      }
      chart.append(svg("text", { x: cx, y: cy + 7, class: "ring-value" }, pct(value)));
      chart.append(svg("text", { x: cx, y: 120, class: "ring-label" }, t(key)));
    });
    target.replaceChildren(chart);
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

  function init() {
    applyLang();
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem("estatedesk.lang", state.lang);
      applyLang();
      render();
      if (state.view.estate) loadTickets();
    });
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("estatedesk.token", $("token-input").value.trim());
      start();
    });
    $("status-filter").addEventListener("change", loadTickets);
    $("report-html").addEventListener("click", () => openReport("html"));
    $("report-xlsx").addEventListener("click", () => openReport("xlsx"));
    window.addEventListener("hashchange", route);
    let resizing = null;
    window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => render(), 200); });
    start();
  }

  async function start() {
    state.token = readToken();
    if (!state.token) return showLogin("");
    try {
      state.summary = await (await api("/v1/dashboard/summary")).json();
    } catch (error) {
      if ($("login").hidden) $("updated").textContent = String(error.message || error);
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    route();
    connect();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
