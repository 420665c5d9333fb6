"""Reports as people read them: the HTML page and the workbook of :mod:`outage_sentinel.reports`.

:mod:`outage_sentinel.reports` computes a :class:`~outage_sentinel.reports.Report`; this module
writes it (:func:`write_report`: the CSV export, whose column names stay stable for machines,
and for people the workbook and the page). For people it presents it:

* in Chinese by default (``en`` available): headers, table and sheet names, kinds, statuses and
  stages in words (:mod:`outage_sentinel.labels`);
* names, not ids: feeders, villages and crews by name;
* values rounded to what they mean (hours to 0.01, customer-hours to 0.1, AIHC-1 and RS-1 to
  four decimals, minutes to 0.01), times as local ``YYYY-MM-DD HH:MM``, phone numbers masked
  and secrets removed;
* a page that fits a 1400 px screen and an A4 landscape sheet: the incidents table is split in
  two (the outage, then notices and crews), columns wrap, charts scale;
* charts labelled in Chinese when the system has a CJK font (Noto/Source Han, WenQuanYi,
  SimHei, Microsoft YaHei, ...); without one they fall back to English labels, and the page
  says so, rather than print boxes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from outage_sentinel.labels import (
    AREA_TYPE_LABELS,
    CLASS_LABELS,
    INTERRUPTION_LABELS,
    KIND_LABELS,
    STAGE_LABELS,
    STATUS_LABELS,
    label,
)
from outage_sentinel.logs import redact

if TYPE_CHECKING:
    from matplotlib.font_manager import FontProperties

    from outage_sentinel.reports import Report

#: An area's ``mark`` (``reports.AREA_MARKS``): counted, or only possibly off and not counted.
MARK_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {"confirmed": "计入", "possible": "可能受影响（不计入）"},
    "en": {"confirmed": "counted", "possible": "possibly affected (not counted)"},
}

#: Languages a report can be written in.
LANGUAGES = ("zh", "en")

#: A column of a people's table: (source column, Chinese header, English header, format).
Column = tuple[str, str, str, str]

INCIDENT_VIEW: Sequence[Column] = (
    ("id", "编号", "Incident", "text"),
    ("kind", "类型", "Kind", "kind"),
    ("status", "状态", "Status", "status"),
    ("feeder_name", "线路", "Feeder", "text"),
    ("start", "开始", "Start", "time"),
    ("end", "结束", "End", "time"),
    ("duration_h", "时长（小时）", "Hours", "h2"),
    ("customers", "户数", "Customers", "int"),
    ("customer_hours", "停电时户数", "Customer-hours", "f1"),
    ("villages", "涉及村庄", "Villages", "text"),
    ("cause_category", "原因分类", "Cause", "text"),
    ("calls", "报修来电", "Trouble calls", "int"),
    ("interruption", "计入指标", "In the figures", "interruption"),
)
RESPONSE_VIEW: Sequence[Column] = (
    ("id", "编号", "Incident", "text"),
    ("stage", "阶段", "Stage", "stage"),
    ("notice_latency_min", "首条村通知用时（分钟）", "First village notice (min)", "min"),
    ("crew_name", "抢修班组", "Crew", "text"),
    ("arrival_deadline", "到达时限", "Arrival deadline", "time"),
    ("arrived_at", "到达时间", "Arrived", "time"),
    ("met_commitment", "按时到达", "On time", "bool"),
    ("unconfirmed_areas", "恢复待确认台区", "Areas back unconfirmed", "int"),
)
SCOPE_VIEW: Sequence[Column] = (
    ("customers", "用户数", "Customers", "int"),
    ("incidents", "停电事件", "Incidents", "int"),
    ("fault_incidents", "故障", "Faults", "int"),
    ("planned_incidents", "预安排", "Planned", "int"),
    ("customer_hours", "停电时户数", "Customer-hours", "f1"),
    ("fault_customer_hours", "故障时户数", "Fault customer-hours", "f1"),
    ("planned_customer_hours", "预安排时户数", "Planned customer-hours", "f1"),
    ("aihc1_h", "AIHC-1（小时/户）", "AIHC-1 (h/customer)", "f4"),
    ("rs1_pct", "RS-1（%）", "RS-1 (%)", "f4"),
)
FEEDER_VIEW: Sequence[Column] = (("feeder_name", "线路", "Feeder", "text"), *SCOPE_VIEW)
VILLAGE_VIEW: Sequence[Column] = (
    ("village_name", "村庄", "Village", "text"),
    ("township", "乡镇", "Township", "text"),
    ("area_type", "地区类型", "Area type", "area_type"),
    *SCOPE_VIEW,
    ("field_confirmations", "联络人确认来电", "Confirmed back by liaisons", "int"),
    ("confirm_minutes_median", "恢复到确认（分钟，中位）", "Restored to confirmed (min, median)",
     "min"),
)
DEAD_VIEW: Sequence[Column] = (
    ("incident_id", "事件编号", "Incident", "text"),
    ("purpose", "用途", "Purpose", "text"),
    ("channel", "渠道", "Channel", "text"),
    ("recipient", "接收方", "Recipient", "masked"),
    ("dead_at", "放弃时间", "Given up", "time"),
    ("attempts", "尝试次数", "Attempts", "int"),
    ("last_error", "最后错误", "Last error", "masked"),
)
AREA_VIEW: Sequence[Column] = (
    ("incident_id", "事件编号", "Incident", "text"),
    ("class", "类别", "Class", "class"),
    ("transformer", "台区", "Transformer area", "text"),
    ("feeder", "线路", "Feeder", "text"),
    ("village", "村庄", "Village", "text"),
    ("customers", "户数", "Customers", "int"),
    ("off_from", "停电起", "Off from", "time"),
    ("back_at", "恢复于", "Back at", "time"),
    ("hours", "小时", "Hours", "h2"),
    ("customer_hours", "时户数", "Customer-hours", "f1"),
    ("mark", "计入指标", "In the figures", "mark"),
)
SUMMARY_VIEW: Sequence[Column] = (
    ("period_start", "统计起", "Period start", "time"),
    ("period_end", "统计止", "Period end", "time"),
    ("hours_in_period", "统计小时数", "Hours in period", "h2"),
    *SCOPE_VIEW,
    ("possible_customer_hours", "可能受影响时户数（不计入）",
     "Possibly affected customer-hours (not counted)", "f1"),
    ("temporary_incidents", "其中临时停电", "of which temporary", "int"),
    ("cancelled_incidents", "取消", "Cancelled", "int"),
    ("momentary_incidents", "短时停电（不计入）", "Short interruptions (not counted)", "int"),
    ("active_incidents", "仍在停电", "Still off", "int"),
    ("notice_latency_median_min", "首条村通知用时中位数（分钟）",
     "First village notice, median (min)", "min"),
    ("notice_latency_p90_min", "首条村通知用时P90（分钟）", "First village notice, p90 (min)",
     "min"),
    ("crew_arrivals_met", "抢修按时到达", "Crew arrivals on time", "int"),
    ("crew_arrivals_missed", "抢修超时", "Crew arrivals late", "int"),
    ("crew_arrivals_pending", "待到达", "Crew arrivals pending", "int"),
    ("dead_letters", "未送达通知", "Undelivered notices", "int"),
    ("trouble_calls", "报修来电", "Trouble calls", "int"),
    ("trouble_calls_without_incident", "未关联停电事件的来电", "Calls joining no incident", "int"),
    ("field_confirmations", "联络人确认来电（台区）", "Areas confirmed back by liaisons", "int"),
    ("field_still_dark", "联络人反馈仍停电", "Still-off reports from liaisons", "int"),
)

#: Sheet (and section) titles per table.
TITLES: Mapping[str, Mapping[str, str]] = {
    "zh": {"summary": "汇总", "incidents": "停电事件", "response": "通知与抢修",
           "by_feeder": "分线路", "by_village": "分村庄", "dead_letters": "未送达通知",
           "areas": "台区明细", "charts": "图表"},
    "en": {"summary": "Summary", "incidents": "Incidents", "response": "Notices and crews",
           "by_feeder": "By feeder", "by_village": "By village", "dead_letters": "Dead letters",
           "areas": "Transformer areas", "charts": "Charts"},
}

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei",
                "PingFang SC", "Heiti SC", "AR PL UMing CN", "Droid Sans Fallback")

#: Where Debian, Ubuntu and RHEL put their CJK fonts.
CJK_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc")


def report_title(report: Report, language: str = "zh") -> str:
    """``停电报告 2026-03-01`` / ``Outage report 2026-03-02 – 2026-03-08``."""
    first = report.start.astimezone(report.tz).date()
    last = (report.end.astimezone(report.tz) - timedelta(microseconds=1)).date()
    if first == last:
        span = first.isoformat()
    else:
        span = f"{first.isoformat()} 至 {last.isoformat()}" if language == "zh" else \
            f"{first.isoformat()} – {last.isoformat()}"
    return f"停电报告 {span}" if language == "zh" else f"Outage report {span}"


def people_table(df: pd.DataFrame, view: Sequence[Column], language: str = "zh",
                 cells: bool = False) -> pd.DataFrame:
    """``df`` as people read it: the columns of ``view`` in order, headed in ``language``,
    every value formatted as text (rounded, local times, words for codes, phones masked).
    With ``cells`` numbers stay numbers (rounded) and times naive local datetimes, for a
    spreadsheet whose users sum and sort them."""
    out = pd.DataFrame(index=df.index)
    for source, zh, en, fmt in view:
        header = zh if language == "zh" else en
        values = df[source] if source in df.columns else pd.Series([None] * len(df),
                                                                      index=df.index)
        out[header] = [_cell(v, fmt, language) if cells else _format(v, fmt, language)
                       for v in values]
    return out.reset_index(drop=True)


def _cell(value: Any, fmt: str, language: str) -> Any:
    """A spreadsheet cell: rounded numbers and naive local times; text like :func:`_format`."""
    if _missing(value):
        return None
    if fmt in _DIGITS:
        digits = _DIGITS[fmt]
        return int(value) if digits is None else round(float(value), digits)
    if fmt == "time":
        return pd.Timestamp(value).tz_localize(None).to_pydatetime()
    return _format(value, fmt, language)


#: Decimal places of the numeric formats (``None``: an integer).
#: Minutes (``min``) to 0.01: a notice sent within seconds reads 0.03, not 0.0.
_DIGITS: Mapping[str, int | None] = {"int": None, "h2": 2, "f1": 1, "f4": 4, "min": 2}


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def summary_table(report: Report, language: str = "zh", cells: bool = False) -> pd.DataFrame:
    """The summary as a two-column table of measure and value."""
    row = people_table(report.summary, SUMMARY_VIEW, language, cells).iloc[0]
    heads = ("指标", "数值") if language == "zh" else ("Measure", "Value")
    return pd.DataFrame({heads[0]: list(row.index), heads[1]: list(row.values)})


def people_tables(report: Report, language: str = "zh", cells: bool = False
                  ) -> dict[str, pd.DataFrame]:
    """Every table of the report for people, by name (see :data:`TITLES`). The page lists the
    villages that had outages; the workbook (``cells``) lists them all."""
    bv = report.by_village
    if not cells:
        bv = bv[(bv["incidents"] > 0) | (bv["customer_hours"] > 0)]
    return {
        "summary": summary_table(report, language, cells),
        "incidents": people_table(report.incidents, INCIDENT_VIEW, language, cells),
        "response": people_table(report.incidents, RESPONSE_VIEW, language, cells),
        "by_feeder": people_table(report.by_feeder, FEEDER_VIEW, language, cells),
        "by_village": people_table(bv, VILLAGE_VIEW, language, cells),
        "dead_letters": people_table(report.dead_letters, DEAD_VIEW, language, cells),
        "areas": people_table(report.areas, AREA_VIEW, language, cells),
    }


def _format(value: Any, fmt: str, language: str) -> str:
    if _missing(value):
        return ""
    formatter = _FORMATS.get(fmt)
    return formatter(value, language) if formatter is not None else str(value)


def _time(value: Any, _language: str) -> str:
    return str(pd.Timestamp(value).strftime("%Y-%m-%d %H:%M"))


def _bool(value: Any, language: str) -> str:
    if language == "zh":
        return "是" if bool(value) else "否"
    return "yes" if bool(value) else "no"


_FORMATS: dict[str, Callable[[Any, str], str]] = {
    "text": lambda v, _l: str(v),
    "int": lambda v, _l: f"{int(v):,}",
    "h2": lambda v, _l: f"{float(v):,.2f}",
    "f1": lambda v, _l: f"{float(v):,.1f}",
    "min": lambda v, _l: f"{float(v):,.2f}",
    "f4": lambda v, _l: f"{float(v):.4f}",
    "time": _time,
    "bool": _bool,
    "masked": lambda v, _l: redact(str(v)),
    "kind": lambda v, lang: label(KIND_LABELS, lang, str(v)),
    "status": lambda v, lang: label(STATUS_LABELS, lang, str(v)),
    "stage": lambda v, lang: label(STAGE_LABELS, lang, str(v)),
    "class": lambda v, lang: label(CLASS_LABELS, lang, str(v)),
    "interruption": lambda v, lang: label(INTERRUPTION_LABELS, lang, str(v)),
    "area_type": lambda v, lang: label(AREA_TYPE_LABELS, lang, str(v)),
    "mark": lambda v, lang: label(MARK_LABELS, lang, str(v)),
}


# -- workbook ------------------------------------------------------------------------------------


def write_xlsx(report: Report, out: Path, language: str = "zh") -> None:
    """One sheet per people's table, titled in ``language``, columns sized to their text."""
    titles = TITLES.get(language, TITLES["en"])
    with pd.ExcelWriter(out, engine="openpyxl") as writer:
        for name, df in people_tables(report, language, cells=True).items():
            df.to_excel(writer, sheet_name=titles[name], index=False)
            sheet = writer.sheets[titles[name]]
            for i, col in enumerate(df.columns, start=1):
                longest = max([_width(str(col))] + [_width(_format(v, "text", language))
                                                    for v in df[col]])
                sheet.column_dimensions[sheet.cell(1, i).column_letter].width = min(
                    60, longest + 2)


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(c) > 0x2E7F else 1 for c in text)


# -- charts --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def cjk_font() -> FontProperties | None:
    """A font on this system that has Chinese glyphs, or ``None``."""
    from matplotlib import font_manager

    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in by_name:
            return font_manager.FontProperties(fname=by_name[family])
    # matplotlib's font list is cached from its first run: a font installed since then is
    # found by its usual file name.
    for path in CJK_FILES:
        if Path(path).is_file():
            return font_manager.FontProperties(fname=path)
    return None


def chart_pngs(report: Report, language: str = "zh") -> dict[str, bytes]:
    """The report's charts as PNG bytes: customer-hours by feeder, incidents by day, notice
    latency. Drawn with matplotlib's Agg canvas (no display, no global pyplot state). Chinese
    labels need a CJK font (:func:`cjk_font`); without one the labels are English."""
    font = cjk_font() if language == "zh" else None
    words = _CHART_WORDS["zh" if font is not None else "en"]
    return {
        "customer_hours_by_feeder": _chart_feeders(report, words, font),
        "incidents_by_day": _chart_days(report, words, font),
        "notice_latency": _chart_latency(report, words, font),
    }


_CHART_WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {"fault": "故障", "planned": "计划/临时", "ch_title": "分线路停电时户数",
           "ch_y": "时户数", "day_title": "每日停电事件（按开始日）", "day_y": "事件数",
           "lat_title": "发现到首条村联络通知用时", "lat_x": "分钟", "lat_y": "事件数",
           "median": "中位数", "none": "本期无数据"},
    "en": {"fault": "fault", "planned": "planned/temporary",
           "ch_title": "Customer-hours lost by feeder", "ch_y": "customer-hours",
           "day_title": "Incidents by day (start)", "day_y": "incidents",
           "lat_title": "First evidence to first liaison notice", "lat_x": "minutes",
           "lat_y": "incidents", "median": "median", "none": "no data in this period"},
}


def _render(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _label_axes(ax: Any, font: FontProperties | None, title: str, ylabel: str,
                xlabel: str = "") -> None:
    ax.set_title(title, fontproperties=font)
    ax.set_ylabel(ylabel, fontproperties=font)
    if xlabel:
        ax.set_xlabel(xlabel, fontproperties=font)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(prop=font)


def _no_data(ax: Any, words: Mapping[str, str], font: FontProperties | None) -> None:
    ax.text(0.5, 0.5, words["none"], ha="center", va="center", transform=ax.transAxes,
            color="grey", fontproperties=font)
    ax.set_xticks([])
    ax.set_yticks([])


def _chart_feeders(report: Report, words: Mapping[str, str], font: FontProperties | None
                   ) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    bf = report.by_feeder
    shown = bf[bf["customer_hours"] > 0]
    if shown.empty:
        _no_data(ax, words, font)
    else:
        x = list(range(len(shown)))
        ax.bar(x, shown["fault_customer_hours"], label=words["fault"], color="#c0392b")
        ax.bar(x, shown["planned_customer_hours"], bottom=shown["fault_customer_hours"],
               label=words["planned"], color="#2980b9")
        names = [(n or f) if font is not None else _ascii(str(f))
                 for f, n in zip(shown["feeder"], shown["feeder_name"], strict=True)]
        ax.set_xticks(x, names, rotation=45, ha="right", fontproperties=font)
    _label_axes(ax, font, words["ch_title"], words["ch_y"])
    return _render(fig)


def incidents_by_day(report: Report) -> dict[date, dict[str, int]]:
    """Each local day of the period with its fault and planned incidents, by the day each
    began (one begun before the period on its first day): the incidents the summary counts
    (sustained interruptions), not the short ones, false alarms or work still to begin."""
    first = report.start.astimezone(report.tz).date()
    last = (report.end.astimezone(report.tz) - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    counts = {d: {"fault": 0, "planned": 0} for d in days}
    counted = report.incidents[report.incidents["interruption"] == "sustained"]
    for s, klass in zip(counted["start"], counted["class"], strict=True):
        counts[max(first, min(last, s.date()))][klass] += 1
    return counts


def _chart_days(report: Report, words: Mapping[str, str], font: FontProperties | None) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    counts = incidents_by_day(report)
    days = list(counts)
    x = list(range(len(days)))
    faults = [counts[d]["fault"] for d in days]
    ax.bar(x, faults, label=words["fault"], color="#c0392b")
    ax.bar(x, [counts[d]["planned"] for d in days], bottom=faults, label=words["planned"],
           color="#2980b9")
    step = max(1, len(days) // 15)
    ax.set_xticks(x[::step], [d.strftime("%m-%d") for d in days][::step], rotation=45, ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _label_axes(ax, font, words["day_title"], words["day_y"])
    return _render(fig)


def _chart_latency(report: Report, words: Mapping[str, str], font: FontProperties | None
                   ) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    latency = report.incidents["notice_latency_min"].dropna().astype(float)
    if latency.empty:
        _no_data(ax, words, font)
    else:
        ax.hist(latency, bins=min(20, max(5, len(latency))), color="#27ae60")
        ax.axvline(float(latency.median()), color="black", linestyle="--",
                   label=words["median"])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _label_axes(ax, font, words["lat_title"], words["lat_y"], words["lat_x"])
    return _render(fig)


def _ascii(text: str) -> str:
    """Tick labels without a CJK font would render as boxes: keep ASCII, else '?'."""
    return text.encode("ascii", "replace").decode("ascii")


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
@page{size:A4 landscape;margin:10mm}
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","Microsoft YaHei",
"PingFang SC",-apple-system,"Segoe UI",sans-serif;margin:1.2em auto;max-width:1400px;
padding:0 1em;color:#222;box-sizing:border-box}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em}
table{border-collapse:collapse;font-size:12px;width:100%;table-layout:auto}
th,td{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f2f2f2}td.num{text-align:right;white-space:nowrap}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#666;font-size:.85em}
@media print{body{max-width:none;margin:0}h2{break-after:avoid}tr{break-inside:avoid}}
"""

_NOTES: Mapping[str, Mapping[str, str]] = {
    "zh": {"period": "统计期 {start} 至 {end}（{tz}），生成于 {generated}。停电时户数、AIHC-1、RS-1 "
                     "按 DL/T 836 计算；预安排停电含计划与临时停电。",
           "villages": "{n} / {total} 个村庄有停电；CSV/XLSX 报表列出全部村庄。",
           "no_font": "本机未安装中文字体，图表使用英文标签（安装 fonts-noto-cjk 或 "
                      "fonts-wqy-microhei 后显示中文）。",
           "none": "无"},
    "en": {"period": "Period {start} to {end} ({tz}), generated {generated}. Customer-hours, "
                     "AIHC-1 and RS-1 per DL/T 836; planned includes temporary work.",
           "villages": "{n} of {total} villages had outages; the CSV/XLSX reports list them all.",
           "no_font": "", "none": "none"},
}


def render_html(report: Report, language: str = "zh") -> str:
    """The report as one self-contained HTML page (tables and base64 PNG charts)."""
    titles = TITLES.get(language, TITLES["en"])
    notes = _NOTES.get(language, _NOTES["en"])
    tables = people_tables(report, language)
    s = report.summary.iloc[0]
    title = html.escape(report_title(report, language))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if language == "zh" else "en"}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        '<p class="note">' + html.escape(notes["period"].format(
            start=_time(s["period_start"], language), end=_time(s["period_end"], language),
            tz=s["timezone"], generated=_time(s["generated_at"], language))) + "</p>",
        f"<h2>{titles['summary']}</h2>", _table_html(tables["summary"], notes["none"]),
        f"<h2>{titles['charts']}</h2>",
    ]
    if language == "zh" and cjk_font() is None:
        parts.append(f'<p class="note">{html.escape(notes["no_font"])}</p>')
    for name, png in chart_pngs(report, language).items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    for name in ("incidents", "response", "by_feeder"):
        parts += [f"<h2>{titles[name]}</h2>", _table_html(tables[name], notes["none"])]
    parts += [f"<h2>{titles['by_village']}</h2>",
              '<p class="note">' + html.escape(notes["villages"].format(
                  n=len(tables["by_village"]), total=len(report.by_village))) + "</p>",
              _table_html(tables["by_village"], notes["none"]),
              f"<h2>{titles['dead_letters']}</h2>",
              _table_html(tables["dead_letters"], notes["none"]), "</body></html>"]
    return "\n".join(parts)


def _table_html(df: pd.DataFrame, none: str) -> str:
    if df.empty:
        return f'<p class="note">{html.escape(none)}</p>'
    return str(df.to_html(index=False, na_rep="", escape=True, border=0))


#: Output formats of :func:`write_report`.
FORMATS = ("csv", "xlsx", "html")


# -- writing ------------------------------------------------------------------------------------


def write_report(report: Report, fmt: str, path: str | Path, language: str = "zh") -> list[Path]:
    """Write ``report`` as ``csv``, ``xlsx`` or ``html`` at ``path``; return the files written.

    * ``csv``: the export for machines. ``path`` holds the incidents table, and every table is
      also written next to it as ``<stem>_<table>.csv`` (``report.csv`` →
      ``report_incidents.csv``, ``report_by_feeder.csv``, ...), with the stable column names of
      :data:`INCIDENT_COLUMNS` and friends, full precision, ids and names (the dead letters'
      recipients and errors masked as everywhere: :func:`outage_sentinel.reports.build_report`
      keeps no number or secret whole). UTF-8 with a BOM so Excel shows Chinese; loads with
      ``pandas.read_csv``.
    * ``xlsx`` and ``html``: for people, in ``language`` (this module):
      one sheet per table, or one self-contained page whose charts are PNG ``data:`` URIs.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return _write_csv(report, out)
    if fmt == "xlsx":
        write_xlsx(report, out, language)
        return [out]
    if fmt == "html":
        out.write_text(render_html(report, language), encoding="utf-8")
        return [out]
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def _write_csv(report: Report, out: Path) -> list[Path]:
    written = []
    tables = report.tables()
    tables["incidents"].to_csv(out, index=False, encoding="utf-8-sig")
    written.append(out)
    for name, df in tables.items():
        p = out.with_name(f"{out.stem}_{name}.csv")
        df.to_csv(p, index=False, encoding="utf-8-sig")
        written.append(p)
    return written
