"""The archived form printed like the paper 《业主(住户)服务登记会签单》: HTML for the
screen and the printer, PDF for the paper archive and exports.

Both are drawn from one layout (sections of label/value grids and tables) so they never
disagree. The PDF uses reportlab's built-in CID font STSong-Light: it ships with the
reader (Adobe's Asian font pack / pdf.js / poppler substitutes), needs no download, and
pypdf extracts its text. PDFs are rendered with reportlab's invariant mode, so the same
form always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from shared.events import AcceptedBy, Channel, RepairClass, ReplyMethod, Severity, Urgency

from .rules import KIND_LABELS, ArchivedForm, RoundRecord

FORM_TITLE = "业主(住户)服务登记会签单"
CJK_FONT = "STSong-Light"
CODE_FONT = "Courier"

CHANNEL_LABELS = {
    Channel.walk_in: "来访",
    Channel.phone: "来电",
    Channel.letter: "来信",
    Channel.online: "网上",
    Channel.walk_around_visit: "走访",
    Channel.relayed_by_employee: "员工转达",
    Channel.escalated_from_above: "上级/政府转来",
}
REPAIR_CLASS_LABELS = {
    RepairClass.emergency: "急修",
    RepairClass.general: "一般维修",
    RepairClass.simple: "简单维修",
    RepairClass.appointment: "预约维修",
    RepairClass.commissioned_immediate: "委托立即维修",
    RepairClass.project: "维修工程",
}
SEVERITY_LABELS = {Severity.serious: "严重", Severity.not_serious: "不严重"}
URGENCY_LABELS = {Urgency.urgent: "紧急", Urgency.not_urgent: "不紧急"}
ACCEPTED_BY_LABELS = {AcceptedBy.department: "部门受理", AcceptedBy.company: "公司受理"}
REPLY_METHOD_LABELS = {
    ReplyMethod.phone: "电话",
    ReplyMethod.visit: "上门",
    ReplyMethod.letter: "信函",
    ReplyMethod.online: "网上",
    ReplyMethod.none: "无回复途径",
}
# Department and rung codes come from estate configuration; unknown codes print as is.
DEPARTMENT_LABELS = {
    "engineering": "工程部",
    "security": "保安部",
    "cleaning": "保洁部",
    "greening": "绿化部",
    "finance": "财务部",
    "customer_service": "客服部",
}
RUNG_LABELS = {
    "department_head": "部门负责人",
    "estate_director": "物业中心主任",
    "company_general_management": "公司综合管理部",
    "general_manager": "总经理",
}
SIGNATURE_LABELS = {"signed": "已签字", "later": "待补签", "not_required": "无需签字"}
CLOCK_LABELS = {
    "arrival": "到场",
    "repair_slip_return": "报修单返回",
    "reply": "答复",
    "tracking": "跟踪控制",
    "acknowledge": "签收",
    "progress_update": "进度告知",
    "callback": "回访",
    "invalid_complaint_notice": "无效投诉告知",
}


# --- layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Label/value pairs, two pairs to a row like the paper form."""

    pairs: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    weights: list[float] | None = None  # relative column widths (PDF); equal when None


@dataclass(frozen=True)
class Text:
    label: str
    text: str


@dataclass
class Section:
    title: str
    blocks: list[Grid | Table | Text] = field(default_factory=list)


def _label(labels: dict, value, empty: str = "—") -> str:
    if value is None:
        return empty
    return labels.get(value, str(value))


def _departments(codes) -> str:
    return "、".join(DEPARTMENT_LABELS.get(c, c) for c in codes) or "—"


def _yes_no(value: bool) -> str:
    return "是" if value else "否"


def _clock_label(code: str | None) -> str:
    return "—" if code is None else CLOCK_LABELS.get(code, code)


class _Clock:
    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def __call__(self, moment: dt.datetime | None) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")


def layout(form: ArchivedForm, record_number: str, content_hash: str) -> tuple[list[tuple[str, str]], list[Section]]:
    """(header lines, sections) shared by the HTML and the PDF."""
    at = _Clock(form.timezone)
    intake = form.intake
    header = [
        ("档案编号", record_number),
        ("会签单编号", form.form_number),
        ("内容哈希 SHA-256", content_hash),
        ("管理处", form.estate.upper()),
    ]
    sections: list[Section] = []

    place = " ".join(p for p in (intake.building, intake.unit, intake.location) if p) or "—"
    reception = Section("一、受理")
    reception.blocks.append(
        Grid(
            [
                ("受理时间", at(intake.received_at)),
                ("登记时间", at(intake.accepted_at)),
                ("受理方式", _label(CHANNEL_LABELS, intake.channel)),
                ("类别", _label(KIND_LABELS, intake.kind)),
                ("问题分类", intake.category),
                ("报修类别", _label(REPAIR_CLASS_LABELS, intake.repair_class)),
                ("严重程度", _label(SEVERITY_LABELS, intake.severity)),
                ("紧急程度", _label(URGENCY_LABELS, intake.urgency)),
                ("受理层级", _label(ACCEPTED_BY_LABELS, intake.accepted_by)),
                ("地点", place),
                ("业主编号", "匿名" if intake.anonymous else (intake.owner_id or "—")),
                ("首问首接责任人", intake.first_contact_name or intake.first_contact),
                ("登记人", intake.registered_by),
                ("非工作时间受理", _yes_no(intake.off_hours)),
                ("约定答复方式", _label(REPLY_METHOD_LABELS, intake.reply_method)),
                ("约定答复时间", at(intake.reply_agreed_by)),
                ("预约上门时间", at(intake.appointment_at)),
                ("投诉对象", intake.about_role or "—"),
                ("业主损失(元)", "—" if intake.owner_loss_cny is None else f"{intake.owner_loss_cny:.2f}"),
                ("事发时间", at(intake.occurred_at)),
                ("业主签字", _label(SIGNATURE_LABELS, intake.owner_signature)),
            ]
        )
    )
    reception.blocks.append(Text("来访事由", intake.description))
    if intake.cause:
        reception.blocks.append(Text("起因", intake.cause))
    if intake.people:
        reception.blocks.append(Text("相关人员", "、".join(intake.people)))
    if intake.attachments:
        reception.blocks.append(Text("附件", "、".join(intake.attachments)))
    sections.append(reception)

    validity = Section("二、有效性判定")
    if form.validity:
        validity.blocks.append(
            Table(
                ["判定时间", "结论", "理由", "判定人", "经理确认", "告知业主期限"],
                [
                    [at(v.judged_at), "有效" if v.valid else "无效", v.reason, v.judged_by,
                     v.confirmed_by or "—", at(v.notify_owner_by)]
                    for v in form.validity
                ],
                [1.3, 0.6, 2.4, 0.9, 0.9, 1.3],
            )
        )
    else:
        validity.blocks.append(Text("判定", "本单无需有效性判定"))
    sections.append(validity)

    for round_ in form.rounds:
        sections.extend(_round_sections(round_, at, len(form.rounds) > 1))

    closing = Section("六、结案")
    if form.closure:
        closing.blocks.append(
            Grid(
                [
                    ("结案时间", at(form.closure.closed_at)),
                    ("结案人", form.closure.closed_by),
                    ("结案轮次", f"第{form.closure.round}轮"),
                    ("结案原因", form.closure.reason),
                ]
            )
        )
    else:
        closing.blocks.append(Text("状态", "未结案"))
    sections.append(closing)
    return header, sections


def _round_sections(round_: RoundRecord, at: _Clock, numbered: bool) -> list[Section]:
    prefix = f"第{round_.round}轮 " if numbered else ""
    dispatch = Section(f"{prefix}三、派工/签收")
    if round_.reopen:
        dispatch.blocks.append(
            Grid(
                [
                    ("重新处理时间", at(round_.reopen.reopened_at)),
                    ("经办人", round_.reopen.reopened_by),
                    ("重新派往部门", _departments(round_.reopen.departments)),
                ]
            )
        )
        dispatch.blocks.append(Text("重新处理原因", round_.reopen.reason))
    dispatch.blocks.append(
        Table(
            ["派工时间", "责任部门", "派工人", "处理时限"],
            [
                [at(t.assigned_at),
                 _departments(t.departments) + (f"(由{_departments([t.transferred_from])}转来)" if t.transferred_from else ""),
                 t.assigned_by,
                 ";".join(f"{_clock_label(d.clock)} {at(d.due_at)}{'(暂定)' if d.provisional else ''}" for d in t.deadlines) or "—"]
                for t in round_.transfers
            ],
            [1.3, 1.5, 1, 2.5],
        )
    )
    dispatch.blocks.append(
        Table(
            ["签收时间", "部门", "签收人"],
            [[at(a.acknowledged_at), _departments([a.department]), a.acknowledged_by] for a in round_.acknowledgements],
            [1.3, 1.5, 3.5],
        )
    )
    if round_.arrivals:
        dispatch.blocks.append(
            Table(
                ["到场时间", "部门", "到场人员"],
                [[at(a.arrived_at), _departments([a.department]), a.arrived_by] for a in round_.arrivals],
                [1.3, 1.5, 3.5],
            )
        )
    if round_.escalations or round_.breaches:
        timed = [
            (e.escalated_at, [at(e.escalated_at), f"上报{RUNG_LABELS.get(e.rung, e.rung)}",
                              e.reason + (f"({_clock_label(e.clock)})" if e.clock else "")
                              + (f" {_departments([e.department])}" if e.department else "")
                              + ("(不合格品处理)" if e.nonconformity else "")])
            for e in round_.escalations
        ] + [
            (b.recorded_at, [at(b.recorded_at), f"{_clock_label(b.clock)}超时",
                             f"时限 {at(b.due_at)}" + (f" {_departments([b.department])}" if b.department else "")
                             + ("(暂定)" if b.provisional else "")])
            for b in round_.breaches
        ]
        # One timeline: the breach comes before the escalation it caused.
        timed.sort(key=lambda item: item[0])
        dispatch.blocks.append(Table(["时间", "督办/超时", "说明"], [row for _, row in timed], [1.3, 1.3, 4]))

    handling = Section(f"{prefix}四、处理意见与结果")
    handling.blocks.append(
        Table(
            ["签回时间", "部门", "处理意见", "处理结果", "经办人", "部门负责人审核"],
            [
                [at(s.signed_at), _departments([s.department]), s.opinion, s.result, s.signed_by, s.verified_by]
                for s in round_.sign_backs
            ],
            [1.3, 0.8, 2, 2, 0.8, 1.4],
        )
    )
    for completion in round_.completions:
        handling.blocks.append(
            Grid([("处理完毕时间", at(completion.completed_at)), ("完成部门", _departments(completion.departments))])
        )
    if round_.progress_updates:
        handling.blocks.append(
            Table(
                ["告知时间", "方式", "进度说明", "告知人"],
                [[at(p.updated_at), _label(REPLY_METHOD_LABELS, p.method), p.note, p.updated_by] for p in round_.progress_updates],
                [1.3, 0.7, 4, 1],
            )
        )

    callbacks = Section(f"{prefix}五、回访")
    rows = []
    for cb in round_.callbacks:
        due = at(cb.schedule.due_at) if cb.schedule else "—"
        if not cb.answers:
            rows.append([due, _label(REPLY_METHOD_LABELS, cb.schedule.method) if cb.schedule else "—", "—", "—", "—",
                         "逾期未回访" if cb.overdue_at else "待回访", "—", "—"])
        for answer in cb.answers:
            rows.append([
                due, _label(REPLY_METHOD_LABELS, answer.method), _yes_no(answer.handled_in_time),
                "满意" if answer.result_satisfied else "不满意", "满意" if answer.attitude_satisfied else "不满意",
                answer.suggestions or "—", answer.done_by, at(answer.answered_at) + ("" if answer.on_time else "(逾期)"),
            ])
    callbacks.blocks.append(
        Table(["应回访时间", "方式", "处理及时", "结果", "态度", "意见建议", "回访人", "回访时间"], rows,
              [1.3, 0.6, 0.7, 0.7, 0.7, 1.8, 0.8, 1.3])
    )
    return [dispatch, handling, callbacks]


# --- HTML ---------------------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 15mm; }
body { font-family: "Songti SC", "SimSun", "Noto Serif CJK SC", serif; font-size: 10.5pt; color: #000; }
h1 { text-align: center; font-size: 18pt; letter-spacing: 0.2em; margin: 0 0 6pt; }
h2 { font-size: 12pt; margin: 10pt 0 4pt; border-bottom: 1px solid #000; }
table { width: 100%; border-collapse: collapse; margin-bottom: 4pt; page-break-inside: auto; }
th, td { border: 1px solid #000; padding: 2pt 4pt; vertical-align: top; text-align: left; }
th { background: #eee; font-weight: normal; white-space: nowrap; }
.header td { border: none; padding: 1pt 0; }
.code { font-family: "Courier New", monospace; font-size: 9pt; }
.note { font-size: 8.5pt; margin-top: 10pt; }
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def form_html(form: ArchivedForm, record_number: str, content_hash: str) -> str:
    """A printable Chinese countersign form (a self-contained HTML page)."""
    header, sections = layout(form, record_number, content_hash)
    out = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{_e(FORM_TITLE)} {_e(record_number)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(FORM_TITLE)}</h1>",
        '<table class="header">',
    ]
    for label, value in header:
        css = ' class="code"' if label in ("档案编号", "内容哈希 SHA-256") else ""
        out.append(f"<tr><td>{_e(label)}:</td><td{css}>{_e(value)}</td></tr>")
    out.append("</table>")
    for section in sections:
        out.append(f"<h2>{_e(section.title)}</h2>")
        for block in section.blocks:
            out.append(_html_block(block))
    out.append(
        f'<p class="note">本单由系统依据事件记录生成并已归档,不得更改。档案编号 {_e(record_number)},'
        f"内容哈希 {_e(content_hash)}。</p>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def _html_block(block: Grid | Table | Text) -> str:
    if isinstance(block, Text):
        return f"<table><tr><th>{_e(block.label)}</th><td>{_e(block.text)}</td></tr></table>"
    if isinstance(block, Grid):
        rows = []
        for i in range(0, len(block.pairs), 2):
            cells = "".join(f"<th>{_e(k)}</th><td>{_e(v)}</td>" for k, v in block.pairs[i:i + 2])
            if len(block.pairs[i:i + 2]) == 1:
                cells += "<th></th><td></td>"
            rows.append(f"<tr>{cells}</tr>")
        return "<table>" + "".join(rows) + "</table>"
    head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
    if block.rows:
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    else:
        body = f'<tr><td colspan="{len(block.headers)}">无</td></tr>'
    return f"<table><tr>{head}</tr>{body}</table>"


# --- PDF ----------------------------------------------------------------------------------


def _register_cjk_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def form_pdf(form: ArchivedForm, record_number: str, content_hash: str) -> bytes:
    """The countersign form as an A4 PDF (same layout as the HTML)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer
    from reportlab.platypus import Table as PdfTable
    from reportlab.platypus import TableStyle
    from xml.sax.saxutils import escape

    _register_cjk_font()
    header, sections = layout(form, record_number, content_hash)
    body = ParagraphStyle("body", fontName=CJK_FONT, fontSize=9, leading=12, wordWrap="CJK")
    label = ParagraphStyle("label", parent=body, textColor=colors.black)
    title = ParagraphStyle("title", fontName=CJK_FONT, fontSize=18, leading=24, alignment=1, spaceAfter=6)
    heading = ParagraphStyle("heading", fontName=CJK_FONT, fontSize=12, leading=16, spaceBefore=8, spaceAfter=3)
    # Codes and hashes must stay on one line: no CJK wrapping, a monospaced font.
    code = ParagraphStyle("code", fontName=CODE_FONT, fontSize=8, leading=11)
    note = ParagraphStyle("note", parent=body, fontSize=8, leading=11, spaceBefore=8)

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(escape(text).replace("\n", "<br/>"), style)

    width = A4[0] - 30 * mm
    grid_style = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]
    )

    story = [p(FORM_TITLE, title)]
    header_rows = [
        [p(f"{k}:", label), Paragraph(escape(v), code if k in ("档案编号", "内容哈希 SHA-256") else body)]
        for k, v in header
    ]
    story.append(PdfTable(header_rows, colWidths=[32 * mm, width - 32 * mm], hAlign="LEFT"))
    for section in sections:
        story.append(p(section.title, heading))
        for block in section.blocks:
            if isinstance(block, Text):
                data = [[p(block.label, label), p(block.text)]]
                widths = [28 * mm, width - 28 * mm]
                style = TableStyle(grid_style.getCommands() + [("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eeeeee"))])
            elif isinstance(block, Grid):
                data = []
                for i in range(0, len(block.pairs), 2):
                    row = []
                    for k, v in block.pairs[i:i + 2]:
                        row += [p(k, label), p(v)]
                    row += [p(""), p("")] * (2 - len(block.pairs[i:i + 2]))
                    data.append(row)
                lw = 26 * mm
                widths = [lw, width / 2 - lw, lw, width / 2 - lw]
                style = TableStyle(
                    grid_style.getCommands()
                    + [("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eeeeee")),
                       ("BACKGROUND", (2, 0), (2, -1), colors.HexColor("#eeeeee"))]
                )
            else:
                data = [[p(h, label) for h in block.headers]]
                data += [[p(c) for c in row] for row in block.rows] or [[p("无")] + [p("")] * (len(block.headers) - 1)]
                weights = block.weights or [1.0] * len(block.headers)
                widths = [width * w / sum(weights) for w in weights]
                commands = grid_style.getCommands() + [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee"))]
                if not block.rows:
                    commands.append(("SPAN", (0, 1), (-1, 1)))
                style = TableStyle(commands)
            table = PdfTable(
                data, colWidths=widths, repeatRows=1 if isinstance(block, Table) else 0, hAlign="LEFT",
                splitInRow=1,  # a long description or opinion may run over a page
            )
            table.setStyle(style)
            story.append(table)
            story.append(Spacer(1, 3))
    story.append(p(f"本单由系统依据事件记录生成并已归档,不得更改。档案编号 {record_number}。", note))
    story.append(Paragraph(escape(f"SHA-256 {content_hash}"), code))

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"{FORM_TITLE} {record_number}",
        subject=content_hash,
        author="EstateDesk",
        creator="EstateDesk archive",
        invariant=1,
    )

    def page_footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(CJK_FONT, 8)
        canvas.drawRightString(A4[0] - 15 * mm, 8 * mm, f"{record_number}  第{doc.page}页")
        canvas.restoreState()

    document.build(story, onFirstPage=page_footer, onLaterPages=page_footer)
    return buffer.getvalue()
