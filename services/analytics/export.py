"""The monthly report on paper: 《月客户意见统计分析表》 as an .xlsx workbook (in memory)
and as a printable HTML page. Both render the same sections, built once from a
`MonthlyReport`, so the spreadsheet and the page never disagree.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from shared.events import Channel, Kind
from services.analytics.rules import COMPANY_TOTAL, Figures, MonthlyReport

SHEET_TITLE = "月客户意见统计分析表"
Lang = Literal["zh", "en"]

# Vocabulary of the form. Codes not listed (an estate's own departments, clocks or
# categories) are printed as they are.
_NAMES: dict[str, dict[str, str]] = {
    "zh": {
        # kinds
        "inquiry": "咨询", "suggestion": "建议", "complaint": "投诉", "praise": "表扬",
        "repair": "报修", "special_service": "特约/委托服务", "situation_report": "情况反映",
        "activity": "社区活动",
        # channels
        "walk_in": "来访", "phone": "来电", "letter": "来信", "online": "网上",
        "walk_around_visit": "走访", "relayed_by_employee": "员工转达",
        "escalated_from_above": "上级/政府转来",
        # departments
        "engineering": "工程部", "security": "保安部", "cleaning": "保洁部",
        "greening": "绿化部", "finance": "财务部", "customer_service": "客服部",
        # clocks
        "acknowledge": "签收", "arrival": "到场", "repair_slip_return": "维修单回交",
        "sign_back": "回单", "reply": "答复", "tracking": "跟踪控制",
        "progress_update": "进展反馈", "invalid_complaint_notice": "无效投诉告知",
        # escalation rungs
        "department_head": "部门负责人", "estate_director": "物业中心主任",
        "company_general_management": "公司综合管理部", "general_manager": "总经理",
        "general": "一般", COMPANY_TOTAL: "全公司",
    },
    "en": {
        "inquiry": "Inquiry", "suggestion": "Suggestion", "complaint": "Complaint",
        "praise": "Praise", "repair": "Repair", "special_service": "Special service",
        "situation_report": "Situation report", "activity": "Community activity",
        "walk_in": "Walk-in", "phone": "Phone", "letter": "Letter", "online": "Online",
        "walk_around_visit": "Walk-around visit", "relayed_by_employee": "Relayed by staff",
        "escalated_from_above": "From superiors/government",
        "engineering": "Engineering", "security": "Security", "cleaning": "Cleaning",
        "greening": "Greening", "finance": "Finance", "customer_service": "Customer service",
        "acknowledge": "Acknowledge", "arrival": "Arrival", "repair_slip_return": "Repair slip return",
        "sign_back": "Sign-back", "reply": "Reply", "tracking": "Tracking control",
        "progress_update": "Progress update", "invalid_complaint_notice": "Invalid-complaint notice",
        "department_head": "Department head", "estate_director": "Estate director",
        "company_general_management": "General management dept", "general_manager": "General manager",
        "general": "General", COMPANY_TOTAL: "Whole company",
    },
}

_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "title": SHEET_TITLE, "estate": "管理处", "period": "统计期间", "due_on": "报送截止日期",
        "s_intake": "一、客户意见受理情况(按类别、渠道)", "kind": "类别", "total": "合计",
        "s_handling": "二、处理情况及有效性", "opened": "本月受理", "off_hours_opened": "其中非办公时间受理",
        "completed": "处理完毕(轮次)", "closed": "关闭", "closed_first_round": "一次处理关闭",
        "first_round_close_rate": "一次处理关闭率", "reactivated": "关闭后重新打开",
        "open_carried_in": "上月结转未结", "open_carried_out": "结转下月未结",
        "valid_complaints": "有效投诉", "invalid_complaints": "无效投诉",
        "valid_complaint_rate": "有效投诉占比", "progress_updates": "进展反馈次数",
        "s_category": "三、按原因类别统计", "category": "原因类别",
        "reopened": "返工(次)", "reopened_tickets": "返工单数", "repeat_problems": "重复意见(次)",
        "repeat_problem_tickets": "重复意见涉及单数", "on_time_rate": "及时率",
        "result_satisfaction_rate": "结果满意率", "attitude_satisfaction_rate": "态度满意率",
        "s_department": "四、按责任部门统计", "department": "部门", "assigned": "派单",
        "acknowledged": "签收", "arrived": "到场", "signed_back": "回单",
        "clocks_met": "按时", "clocks_breached": "超时", "escalations": "升级",
        "s_clock": "五、时限执行情况", "clock": "时限",
        "s_callback": "六、回访及满意度", "callbacks_required": "应回访", "callbacks_done": "已回访",
        "callbacks_on_time": "按时回访", "callbacks_overdue": "逾期回访",
        "callback_rate": "回访率", "callback_on_time_rate": "按时回访率",
        "satisfaction_answers": "回访答复数", "handled_in_time": "认为处理及时",
        "handled_in_time_rate": "处理及时率", "result_satisfied": "结果满意", "attitude_satisfied": "态度满意",
        "s_escalation": "七、升级、返工与重复意见", "rung": "升级层级", "nonconformities": "不合格品/服务记录",
        "s_actions": "八、存在问题及纠正措施", "problem": "存在问题", "action": "纠正措施",
        "owner": "责任人", "status": "完成情况", "tickets": "相关单号", "none": "无",
        "s_signoff": "九、部门负责人总结分析及签名", "summary": "总结分析",
        "department_head": "部门负责人签名", "signed_on": "日期", "director": "物业服务中心主任",
        "supervisor": "客服主管", "quality_manager": "品质主管(公司综合管理部)",
        "count": "次数", "item": "项目", "value": "数值",
    },
    "en": {
        "title": "Monthly customer opinion statistics and analysis", "estate": "Estate",
        "period": "Period", "due_on": "Due to the company by",
        "s_intake": "1. Opinions received (by kind and channel)", "kind": "Kind", "total": "Total",
        "s_handling": "2. Handling and validity", "opened": "Received", "off_hours_opened": "of which off hours",
        "completed": "Completed (rounds)", "closed": "Closed", "closed_first_round": "Closed at first round",
        "first_round_close_rate": "First-round close rate", "reactivated": "Re-opened after closing",
        "open_carried_in": "Open, carried in", "open_carried_out": "Open, carried to next month",
        "valid_complaints": "Valid complaints", "invalid_complaints": "Invalid complaints",
        "valid_complaint_rate": "Valid share", "progress_updates": "Progress updates",
        "s_category": "3. By cause category", "category": "Category",
        "reopened": "Re-opened (times)", "reopened_tickets": "Re-opened tickets",
        "repeat_problems": "Repeat problems", "repeat_problem_tickets": "Tickets in repeats",
        "on_time_rate": "On-time rate", "result_satisfaction_rate": "Result satisfaction",
        "attitude_satisfaction_rate": "Attitude satisfaction",
        "s_department": "4. By department", "department": "Department", "assigned": "Assigned",
        "acknowledged": "Acknowledged", "arrived": "Arrived", "signed_back": "Signed back",
        "clocks_met": "On time", "clocks_breached": "Late", "escalations": "Escalations",
        "s_clock": "5. Deadlines kept", "clock": "Clock",
        "s_callback": "6. Callbacks and satisfaction", "callbacks_required": "Required",
        "callbacks_done": "Done", "callbacks_on_time": "Done on time", "callbacks_overdue": "Overdue",
        "callback_rate": "Callback rate", "callback_on_time_rate": "On-time callback rate",
        "satisfaction_answers": "Answers", "handled_in_time": "Handled in time",
        "handled_in_time_rate": "Handled-in-time rate", "result_satisfied": "Satisfied with result",
        "attitude_satisfied": "Satisfied with attitude",
        "s_escalation": "7. Escalations, re-opening and repeats", "rung": "Rung",
        "nonconformities": "Nonconformity records",
        "s_actions": "8. Problems and corrective actions", "problem": "Problem", "action": "Corrective action",
        "owner": "Owner", "status": "Status", "tickets": "Tickets", "none": "None",
        "s_signoff": "9. Department head's analysis and signature", "summary": "Analysis",
        "department_head": "Department head", "signed_on": "Date", "director": "Estate director",
        "supervisor": "Customer service supervisor", "quality_manager": "Quality manager (general management)",
        "count": "Count", "item": "Item", "value": "Value",
    },
}


@dataclass(frozen=True)
class Percent:
    """A rate cell: a fraction, or None when its denominator was 0 (printed "—")."""

    value: float | None


@dataclass
class Section:
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    total_row: bool = False  # the last row is a total (bold)


def _name(lang: Lang, code: str) -> str:
    return _NAMES[lang].get(code, code)


def _ordered(keys: list[str], canonical: list[str]) -> list[str]:
    """Canonical order of the form first, then any other code seen, alphabetically."""
    return [k for k in canonical if k in keys] + sorted(k for k in keys if k not in canonical)


def build_sections(report: MonthlyReport, lang: Lang = "zh") -> list[Section]:
    """The report's sections in the form's order, with labels in `lang`."""
    t = _TEXT[lang]
    totals = report.totals
    sections: list[Section] = []

    # 1. kind × channel, every kind and channel of the form, even when zero.
    channels = _ordered(sorted({c for row in report.by_kind_channel.values() for c in row}
                               | {c.value for c in Channel}), [c.value for c in Channel])
    kinds = _ordered(sorted(set(report.by_kind_channel) | set(report.by_kind) | {k.value for k in Kind}),
                     [k.value for k in Kind])
    intake = Section(t["s_intake"], [t["kind"]] + [_name(lang, c) for c in channels] + [t["total"]], total_row=True)
    for kind in kinds:
        row = report.by_kind_channel.get(kind, {})
        opened = report.by_kind.get(kind, Figures()).opened
        intake.rows.append([_name(lang, kind)] + [row.get(c, 0) for c in channels] + [opened])
    intake.rows.append([t["total"]] + [
        sum(report.by_kind_channel.get(k, {}).get(c, 0) for k in kinds) for c in channels
    ] + [totals.opened])
    sections.append(intake)

    # 2. handling, carry-over and validity.
    sections.append(Section(t["s_handling"], [t["item"], t["value"]], [
        [t["open_carried_in"], report.open_carried_in],
        [t["opened"], totals.opened],
        [t["off_hours_opened"], totals.off_hours_opened],
        [t["reactivated"], totals.reactivated],
        [t["completed"], totals.completed],
        [t["closed"], totals.closed],
        [t["closed_first_round"], totals.closed_first_round],
        [t["first_round_close_rate"], Percent(totals.first_round_close_rate)],
        [t["open_carried_out"], report.open_carried_out],
        [t["valid_complaints"], totals.valid_complaints],
        [t["invalid_complaints"], totals.invalid_complaints],
        [t["valid_complaint_rate"], Percent(totals.valid_complaint_rate)],
        [t["progress_updates"], totals.progress_updates],
    ]))

    # 3. by cause category.
    columns = ["opened", "completed", "closed", "valid_complaints", "invalid_complaints",
               "reopened", "repeat_problems", "clocks_met", "clocks_breached"]
    rates = ["on_time_rate", "result_satisfaction_rate"]
    category = Section(t["s_category"], [t["category"]] + [t[c] for c in columns + rates], total_row=True)
    for key, f in report.by_category.items():
        category.rows.append([_name(lang, key)] + [getattr(f, c) for c in columns]
                             + [Percent(getattr(f, r)) for r in rates])
    category.rows.append([t["total"]] + [getattr(totals, c) for c in columns]
                         + [Percent(getattr(totals, r)) for r in rates])
    sections.append(category)

    # 4. by department (a form routed to two departments counts for both).
    columns = ["assigned", "acknowledged", "arrived", "signed_back", "completed",
               "clocks_met", "clocks_breached", "escalations", "reopened"]
    rates = ["on_time_rate", "result_satisfaction_rate", "attitude_satisfaction_rate"]
    department = Section(t["s_department"], [t["department"]] + [t[c] for c in columns + rates])
    for key, f in report.by_department.items():
        department.rows.append([_name(lang, key)] + [getattr(f, c) for c in columns]
                               + [Percent(getattr(f, r)) for r in rates])
    sections.append(department)

    # 5. every clock's on-time rate.
    clock = Section(t["s_clock"], [t["clock"], t["clocks_met"], t["clocks_breached"], t["on_time_rate"]],
                    total_row=True)
    for key, f in report.by_clock.items():
        clock.rows.append([_name(lang, key), f.clocks_met, f.clocks_breached, Percent(f.on_time_rate)])
    clock.rows.append([t["total"], totals.clocks_met, totals.clocks_breached, Percent(totals.on_time_rate)])
    sections.append(clock)

    # 6. callbacks and satisfaction.
    sections.append(Section(t["s_callback"], [t["item"], t["value"]], [
        [t["callbacks_required"], totals.callbacks_required],
        [t["callbacks_done"], totals.callbacks_done],
        [t["callbacks_on_time"], totals.callbacks_on_time],
        [t["callbacks_overdue"], totals.callbacks_overdue],
        [t["callback_rate"], Percent(totals.callback_rate)],
        [t["callback_on_time_rate"], Percent(totals.callback_on_time_rate)],
        [t["satisfaction_answers"], totals.satisfaction_answers],
        [t["handled_in_time"], totals.handled_in_time],
        [t["result_satisfied"], totals.result_satisfied],
        [t["attitude_satisfied"], totals.attitude_satisfied],
        [t["handled_in_time_rate"], Percent(totals.handled_in_time_rate)],
        [t["result_satisfaction_rate"], Percent(totals.result_satisfaction_rate)],
        [t["attitude_satisfaction_rate"], Percent(totals.attitude_satisfaction_rate)],
    ]))

    # 7. escalations, re-opening, repeats.
    escalation = Section(t["s_escalation"], [t["item"], t["value"]])
    for rung, count in report.by_rung.items():
        escalation.rows.append([f'{t["escalations"]} ({_name(lang, rung)})', count])
    escalation.rows += [
        [t["escalations"], totals.escalations],
        [t["nonconformities"], totals.nonconformities],
        [t["reopened"], totals.reopened],
        [t["reopened_tickets"], totals.reopened_tickets],
        [t["repeat_problems"], totals.repeat_problems],
        [t["repeat_problem_tickets"], totals.repeat_problem_tickets],
    ]
    sections.append(escalation)

    # 8. problems and corrective actions.
    actions = Section(t["s_actions"], [t["problem"], t["action"], t["owner"], t["status"], t["tickets"]])
    for line in report.corrective_actions:
        actions.rows.append([line.problem, line.action, line.owner, line.status, ", ".join(line.tickets)])
    if not actions.rows:
        actions.rows.append([t["none"], "", "", "", ""])
    sections.append(actions)
    return sections


def _signoff_lines(report: MonthlyReport, lang: Lang) -> list[tuple[str, str]]:
    t = _TEXT[lang]
    signed_on = report.sign_off.signed_on.isoformat() if report.sign_off.signed_on else ""
    if report.estate == COMPANY_TOTAL:
        return [(t["quality_manager"], ""), (t["signed_on"], "")]
    return [
        (t["department_head"], report.sign_off.department_head),
        (t["signed_on"], signed_on),
        (t["supervisor"], ""),
        (t["director"], ""),
    ]


# --- .xlsx --------------------------------------------------------------------------------------

_THIN = Side(style="thin", color="000000")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEADER_FILL = PatternFill("solid", start_color="DDE6F0", end_color="DDE6F0")
_SECTION_FONT = Font(bold=True, size=11)
_PERCENT_FORMAT = "0.0%"


def _cell_value(value: Any) -> Any:
    if isinstance(value, Percent):
        return "—" if value.value is None else value.value
    if isinstance(value, str):
        # A worksheet cannot hold C0 control characters; text from older events may.
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


def monthly_report_xlsx(report: MonthlyReport, lang: Lang = "zh") -> bytes:
    """The report as one worksheet titled 月客户意见统计分析表, ready to print."""
    t = _TEXT[lang]
    sections = build_sections(report, lang)
    width = max(len(s.header) for s in sections)
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE

    ws.cell(row=1, column=1, value=t["title"]).font = Font(bold=True, size=16)
    ws.cell(row=1, column=1).alignment = Alignment(horizontal="center")
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    meta = [(t["estate"], _name(lang, report.estate)), (t["period"], report.period),
            (t["due_on"], report.due_on.isoformat() if report.due_on else "")]
    for index, (label, value) in enumerate(meta):
        ws.cell(row=2, column=1 + 2 * index, value=label).font = Font(bold=True)
        ws.cell(row=2, column=2 + 2 * index, value=value)
    row = 4

    for section in sections:
        ws.cell(row=row, column=1, value=section.title).font = _SECTION_FONT
        row += 1
        for column, heading in enumerate(section.header, start=1):
            cell = ws.cell(row=row, column=column, value=heading)
            cell.font = Font(bold=True)
            cell.fill = _HEADER_FILL
            cell.border = _BORDER
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        row += 1
        for index, values in enumerate(section.rows):
            is_total = section.total_row and index == len(section.rows) - 1
            for column, value in enumerate(values, start=1):
                cell = ws.cell(row=row, column=column, value=_cell_value(value))
                cell.border = _BORDER
                if isinstance(value, Percent):
                    cell.number_format = _PERCENT_FORMAT
                    cell.alignment = Alignment(horizontal="right")
                if is_total:
                    cell.font = Font(bold=True)
            row += 1
        row += 1

    # 9. sign-off: the head's analysis and signature (RULES §4), blank until signed.
    ws.cell(row=row, column=1, value=t["s_signoff"]).font = _SECTION_FONT
    row += 1
    ws.cell(row=row, column=1, value=t["summary"]).font = Font(bold=True)
    summary = ws.cell(row=row, column=2, value=report.sign_off.summary)
    summary.alignment = Alignment(wrap_text=True, vertical="top")
    ws.merge_cells(start_row=row, start_column=2, end_row=row + 3, end_column=width)
    for r in range(row, row + 4):
        for c in range(1, width + 1):
            ws.cell(row=r, column=c).border = _BORDER
    row += 5
    for label, value in _signoff_lines(report, lang):
        ws.cell(row=row, column=1, value=label).font = Font(bold=True)
        cell = ws.cell(row=row, column=2, value=value)
        cell.border = Border(bottom=_THIN)
        ws.cell(row=row, column=3).border = Border(bottom=_THIN)
        row += 2

    ws.column_dimensions["A"].width = 26
    for column in range(2, width + 1):
        ws.column_dimensions[get_column_letter(column)].width = 12
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.oddFooter.center.text = "&P / &N"

    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       font-size: 12px; color: #000; margin: 16px; }
h1 { font-size: 20px; text-align: center; margin: 0 0 8px; }
.meta { display: flex; gap: 32px; justify-content: center; margin-bottom: 12px; }
h2 { font-size: 14px; margin: 16px 0 4px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 4px; }
th, td { border: 1px solid #000; padding: 3px 6px; }
th { background: #dde6f0; font-weight: bold; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; }
.summary { border: 1px solid #000; min-height: 90px; padding: 6px; white-space: pre-wrap; }
.signatures { display: flex; flex-wrap: wrap; gap: 24px 48px; margin-top: 16px; }
.signature .line { display: inline-block; min-width: 160px; border-bottom: 1px solid #000; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { margin: 0; }
  th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section { break-inside: avoid; page-break-inside: avoid; }
}
"""


def _html_cell(value: Any) -> str:
    if isinstance(value, Percent):
        text = "—" if value.value is None else f"{value.value * 100:.1f}%"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def monthly_report_html(report: MonthlyReport, lang: Lang = "zh") -> str:
    """The report as a self-contained printable page (inline CSS, A4 landscape)."""
    if lang not in _TEXT:
        raise ValueError(f"unsupported language {lang!r}")
    t = _TEXT[lang]
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">',
        f"<title>{esc(t['title'])} {esc(_name(lang, report.estate))} {esc(report.period)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(t['title'])}</h1>",
        '<div class="meta">',
        f"<span>{esc(t['estate'])}:{esc(_name(lang, report.estate))}</span>",
        f"<span>{esc(t['period'])}:{esc(report.period)}</span>",
        f"<span>{esc(t['due_on'])}:{esc(report.due_on.isoformat() if report.due_on else '')}</span>",
        "</div>",
    ]
    for section in build_sections(report, lang):
        parts.append(f"<section><h2>{esc(section.title)}</h2><table><thead><tr>")
        parts.extend(f"<th>{esc(h)}</th>" for h in section.header)
        parts.append("</tr></thead><tbody>")
        for index, values in enumerate(section.rows):
            is_total = section.total_row and index == len(section.rows) - 1
            parts.append('<tr class="total">' if is_total else "<tr>")
            parts.extend(_html_cell(v) for v in values)
            parts.append("</tr>")
        parts.append("</tbody></table></section>")
    parts.append(f"<section><h2>{esc(t['s_signoff'])}</h2>")
    parts.append(f"<div><strong>{esc(t['summary'])}</strong></div>")
    parts.append(f'<div class="summary">{esc(report.sign_off.summary)}</div><div class="signatures">')
    for label, value in _signoff_lines(report, lang):
        parts.append(f'<div class="signature">{esc(label)}:<span class="line">{esc(value)}</span></div>')
    parts.append("</div></section></body></html>")
    return "".join(parts)
