"use strict";
// The board's page: overview, incident and map views drawn from the server's JSON, kept live
// by Server-Sent Events (/api/events). Every text goes through textContent (no HTML from data).

const BODY = document.body;
const LANG = BODY.dataset.language === "en" ? "en" : "zh";
const CSRF = BODY.dataset.csrf;
const MAY_ACT = BODY.dataset.role === "operator" || BODY.dataset.role === "admin";

const WORDS = {
  zh: {
    incidents: "进行中的故障停电", planned: "今明两天计划/临时停电", sources: "数据源",
    outbox: "通知发送", feeder: "线路", point: "故障点", customers: "户数", villages: "村庄",
    stage: "阶段", crew: "班组", deadline: "到达时限", etr: "预计恢复", special: "重点/关怀",
    none: "无", reported: "（数据源报告）", inferred: "推断", live: "实时", lost: "连接中断，正在重连…",
    storm: "已宣布恶劣天气", declare: "宣布恶劣天气", endStorm: "结束恶劣天气",
    timeline: "处理记录", evidence: "收到的证据", hypotheses: "候选故障点", section: "巡线区段",
    areas: "受影响台区", care: "重点关怀户", notices: "通知", actions: "操作",
    ack: "确认", dispatch: "派单", arrive: "到达现场", restore: "恢复送电（所选台区）", reopen: "仍停电（撤销所选台区的恢复）",
    setEtr: "设置预计恢复时间", cancel: "撤销事件", close: "销号", scopeRemove: "移出范围",
    falseAlarm: "误报（未停电，不计停电）", lostAgain: "恢复后再次失电（另计一次停电；不勾：恢复为误操作，停电持续）", deviceAnyway: "设备不符也销号（所选设备不在已确认停电台区的上游）",
    cause: "原因分类", device: "确认的故障设备（可多选）", deviceOther: "其他设备（编号或名称，逗号分隔）", otherArea: "非本线路班组", found: "销号确认故障设备", toClose: "待销号",
    quarantine: "未能接收的记录（隔离）", note: "备注", reason: "原因",
    quarantineRetry: "重新处理", notRetried: "不能重新处理",
    again: (n, at) => `此后又收到${n}次，最近${at}`,
    best: "推荐班组（自动）", back: "已恢复", unconfirmed: "恢复待确认（记录已结束，无来电证据）", continued: "未确认恢复，仍停电，转入", reopens: "再次停电，接续", outboxList: "逐条查看", outboxMore: "只列出最新200条", amendClose: "更正销号", toCloseAll: "（列出近7天最新50起，其余请按编号查询）", confirmBack: "确认已恢复（所选台区）", closeUnconfirmed: "恢复未经确认也销号", dead: "死信", retry: "重发", pending: "待发",
    sent: "已发", lastPoll: "最近成功", failing: "失败", ok: "正常", missed: "已超时",
    clockOffset: (o, n, dir) => `时钟偏差：报告时间比接收时间${dir === "behind" ? "早" : "晚"}${n}小时（按${o.read_in || "-"}读取，疑似按${o.stamped_in || "-"}记时）；其停电时间（含通知中的）可能相差${n}小时，未作调整。核实后设置 ${o.config_key} 并重启${o.since_local ? "（" + o.since_local + "起）" : ""}`,
    left: "剩余", over: "超时", open: "新建（电话报修）", transformers: "台区（逗号分隔）",
    caller: "来电", onlyHere: "仅此假设停电", onlyFirst: "仅首选停电", prob: "概率",
    map: "地图", off: "停电", sourceNamed: "数据源指明", viewerNote: "只读账号：不能操作",
    hours: "小时（可空）", silenced: "已静默", withdrawn: "已撤回", superseded: "已被取代", answers: "联络人反馈", stillDark: "联络人反馈仍停电", photos: "现场照片", silences: "静默", until: "截止", expire: "结束",
    smsTemplate: "短信模板（实际发送的参数）", held: "已暂扣", hold: "暂扣", release: "放行", withdraw: "撤回",
    outboxReason: "暂扣/撤回原因（撤回必填）", outboxForce: "强制（force：已过时或静默中也重发/放行）", readdressed: "已改发至新地址，原地址",
    clear: "清除", clearDevice: "清除运行人员设置的故障点（按证据重新推断）", clearEtr: "清除设置的预计恢复时间（改按停电信息）", setNow: "已设置",
    add: "添加", scopeAdd: "加入范围", setDevice: "设为故障点（运行人员确认）", faultDevice: "故障设备（候选中选，可多选）", setBy: "设置人", alternative: "另一可能", certainty: "把握", unexplained: "已报停电、不在故障点下游（按误报处理或另有故障，请核实）", disputed: "电表仍报停电，未按恢复处理", disputedHeld: "电表仍报停电（暂未确认），未按恢复处理", force: "含重点关怀户也静默", matchers: {feeder: "线路", village: "村庄", incident: "事件"},
  },
  en: {
    incidents: "Active fault outages", planned: "Planned/temporary outages, today and tomorrow",
    sources: "Sources", outbox: "Notices", feeder: "Feeder", point: "Fault point",
    customers: "Customers", villages: "Villages", stage: "Stage", crew: "Crew",
    deadline: "Arrival deadline", etr: "Expected back", special: "Important/care", none: "none",
    reported: "(reported by a source)", inferred: "estimated", live: "live",
    lost: "Connection lost, reconnecting…", storm: "Storm declared", declare: "Declare storm",
    endStorm: "End storm", timeline: "Timeline", evidence: "Evidence received",
    hypotheses: "Hypotheses", section: "Section to patrol", areas: "Affected areas",
    care: "Special-care households", notices: "Notices", actions: "Actions", ack: "Confirm",
    dispatch: "Dispatch", arrive: "Crew on site", restore: "Restore (selected areas)", reopen: "Still off (undo the selected areas' restoration)",
    setEtr: "Set expected restoration", cancel: "Cancel", close: "Close out",
    falseAlarm: "False alarm (no supply was lost: nothing counts)", lostAgain: "Lost again after it came back (another outage spell; unticked: the restoration was a mistake, the outage carried on)", deviceAnyway: "Close although the devices do not feed every area confirmed off",
    scopeRemove: "Take out of scope", cause: "Cause category", device: "Devices the crews found (several: Ctrl-click)",
    deviceOther: "Other devices (ids or names, comma-separated)", otherArea: "outside its feeders", found: "found at close-out", toClose: "Awaiting close-out",
    quarantine: "Records not taken in (quarantine)",
    quarantineRetry: "Process again", notRetried: "cannot be processed again",
    again: (n, at) => `came again ${n} times, last ${at}`,
    note: "Note", reason: "Reason", best: "Suggested crew (automatic)", back: "back",
    unconfirmed: "back unconfirmed (records ended, no evidence)", continued: "never confirmed back, off in", reopens: "off again after", outboxList: "list them", outboxMore: "the latest 200 listed", amendClose: "Correct the close-out", toCloseAll: "(the latest 50 of 7 days listed; find the rest by id)", confirmBack: "Confirm back (selected areas)", closeUnconfirmed: "Close although not confirmed back",
    dead: "dead", retry: "Retry", pending: "pending", sent: "sent", lastPoll: "last success",
    failing: "failing", ok: "ok", missed: "missed", left: "left", over: "over",
    clockOffset: (o, n, dir) => `Clock offset: report times sit ${n} h ${dir === "behind" ? "behind" : "ahead of"} their arrival (read in ${o.read_in || "-"}, probably stamped in ${o.stamped_in || "-"}); its outage times, in notices too, may be ${n} h off and are not shifted. If so, set ${o.config_key} and restart${o.since_local ? " (since " + o.since_local + ")" : ""}`,
    open: "Open (phone call)", transformers: "Areas (comma-separated)", caller: "Caller",
    onlyHere: "only this one has off", onlyFirst: "only the first has off", prob: "probability",
    map: "Map", off: "off", sourceNamed: "named by a source", viewerNote: "Viewer: read only",
    hours: "hours (optional)", silenced: "silenced", withdrawn: "withdrawn", superseded: "superseded", answers: "Liaisons' answers", stillDark: "reported still off", photos: "photos", silences: "Silences", until: "until",
    smsTemplate: "SMS template (the parameters sent)", held: "held", hold: "Hold", release: "Release", withdraw: "Withdraw",
    outboxReason: "why hold / withdraw (required to withdraw)", outboxForce: "force (retry / release even if out of date or silenced)", readdressed: "re-addressed; was",
    clear: "Clear", clearDevice: "Take back the fault point set (estimate it from the evidence again)", clearEtr: "Take back the expected restoration set (the sources' again)", setNow: "set",
    expire: "End", add: "Add", scopeAdd: "Add to scope", setDevice: "Set as fault point (command centre)", faultDevice: "Fault device (from the candidates; several: Ctrl-click)", setBy: "set by", alternative: "next most likely", certainty: "How sure", unexplained: "Reported off, not below the fault point (read as false, or another fault: check)", disputed: "Meters still report off, not counted back", disputedHeld: "Meters still report off (not confirmed yet), not counted back", force: "also over special-care households",
    matchers: {feeder: "feeder", village: "village", incident: "incident"},
  },
};
const W = WORDS[LANG];
const CAUSES = LANG === "zh"
  ? ["树线矛盾", "设备故障", "外力破坏", "雷击", "大风", "用户原因", "动物", "其他"]
  : ["vegetation", "equipment", "third party", "lightning", "wind", "customer", "animal", "other"];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, body) {
  const opts = {credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers = {"Content-Type": "application/json", "X-CSRF-Token": CSRF};
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 401) { window.location = "/login"; throw new Error("signed out"); }
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function flash(text, bad) {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = bad ? "flash bad" : "flash";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function act(path, body) {
  // The word of the action before goes: what shows next is this action's outcome.
  document.getElementById("flash").hidden = true;
  try {
    const data = await api(path, body);
    flash(data.result || "ok", false);
    freshForms = true;  // what was typed is done with; a failed action keeps it to fix
    await render();
  } catch (e) { flash(e.message, true); }
}

function countdown(iso, state) {
  if (!iso) return "";
  if (state === "met") return "✓";
  const mins = Math.round((Date.parse(iso) - Date.now()) / 60000);
  return mins >= 0 ? `${W.left} ${mins} min` : `${W.over} ${-mins} min`;
}

function deadlineClass(iso, state) {
  if (!iso || state === "met") return "ok";
  const mins = (Date.parse(iso) - Date.now()) / 60000;
  return mins < 0 ? "red" : mins < 15 ? "amber" : "ok";
}

function pointText(c) {
  if (c.found && c.found.length) return `${W.found}: ${c.found.map((d) => d.name).join("、")}`;
  if (!c.devices.length) return W.none;
  const names = c.devices.map((d) => d.name).join("、");
  const sure = c.certainty || {};
  if (sure.basis === "set") return `${names} · ${sure.label} (${W.setBy} ${sure.set_by})`;
  if (c.device_reported) return `${names} ${W.reported}`;
  // Part named by a source, part inferred: the crew's words, which say which is which and
  // state the set's probability ("马集2号熔断器数据源报告动作；马集1号熔断器疑似动作，…约55%").
  if ((sure.devices || []).some((d) => d.basis === "reported")) return sure.label;
  // Every probability the page shows is the texts' own label (crew.percent_label): never
  // rounded again here, so the board and the texts state the same number.
  return `${W.inferred}: ${names} (${c.probability_label})`;
}

// How sure the fault point is, in the words the crew reads: the command centre's (by whom),
// a source's report, or the localiser's probability and the next close alternative.
function certaintyText(c) {
  const sure = c.certainty || {};
  if (!sure.basis) return W.none;
  const by = sure.basis === "set" ? ` (${W.setBy} ${sure.set_by})` : "";
  const alt = sure.alternative ? ` · ${W.alternative}: ${sure.alternative.names} (${sure.alternative.probability_label})` : "";
  return `${sure.label}${by}${alt}`;
}

// Devices chosen from the estimate's candidates (several in a storm) or typed by id or name:
// the close-out's field and the fault-point correction's, starting from the device set.
function devicePicker(c, name, chosen = c.device_set) {
  const preset = new Set((chosen || []).map((d) => d.id));
  const listed = new Set(c.closable.map((d) => d.id));
  const select = h("select", {name, multiple: true, size: 3}, c.closable.map((d) => h("option", {value: d.id, selected: preset.has(d.id)}, d.name)));
  // One chosen that the list does not hold (the crews found it elsewhere) stands typed in.
  const other = h("input", {name: `${name}_other`, placeholder: W.deviceOther, value: (chosen || []).filter((d) => !listed.has(d.id)).map((d) => d.id).join(",")});
  const value = () => [...[...select.selectedOptions].map((o) => o.value), other.value.trim()].filter(Boolean).join(",");
  return {select, other, value};
}

// -- overview ----------------------------------------------------------------------------------

// Planned work holds no crew to an arrival deadline: its table has no such column.
function incidentRow(c, withDeadline = true) {
  return h("tr", {class: `stage-${c.stage}`, "data-incident": c.id},
    h("td", {}, h("a", {href: `#/incident/${encodeURIComponent(c.id)}`}, c.id)),
    h("td", {}, c.feeder_name),
    h("td", {}, pointText(c)),
    h("td", {class: "num"}, c.customers),
    h("td", {}, c.villages.slice(0, 4).map((v) => v.name).join("、") + (c.villages.length > 4 ? ` +${c.villages.length - 4}` : "")),
    h("td", {class: "num"}, `${c.important}/${c.special_care}`),
    h("td", {}, c.stage_label, fieldBadges(c)),
    h("td", {}, c.crew_name || ""),
    withDeadline ? h("td", {class: `deadline ${deadlineClass(c.deadline, c.deadline_state)}`, "data-deadline": c.deadline || "", "data-state": c.deadline_state}, countdown(c.deadline, c.deadline_state)) : null,
    h("td", {}, c.etr_local || ""));
}

// What the field said: areas confirmed back, areas still off (after restoration), photos.
function fieldBadges(c) {
  const parts = [];
  if (c.field_back) parts.push(h("span", {class: "badge ok", title: W.back}, `✓${c.field_back}`));
  if (c.field_dark) parts.push(h("span", {class: "badge bad", title: W.stillDark}, `✗${c.field_dark}`));
  if (c.photos) parts.push(h("span", {class: "badge", title: W.photos}, `▣${c.photos}`));
  return parts.length ? h("span", {class: "badges"}, ...parts) : null;
}

// An AMI source whose times look read in the wrong zone: the offset and the key to set.
function clockOffsetNote(o) {
  if (!o) return null;
  const n = Math.abs(o.hours);
  return h("div", {class: "warn clock-offset"}, W.clockOffset(o, n, o.hours < 0 ? "behind" : "ahead"));
}

function overviewView(data) {
  const head = [W.feeder, W.point, W.customers, W.villages, W.special, W.stage, W.crew, W.deadline, W.etr];
  const table = (rows, withDeadline = true) => h("table", {class: "grid", id: withDeadline ? "incidents-table" : "planned-table"},
    h("thead", {}, h("tr", {}, h("th", {}, "#"), head.filter((t) => withDeadline || t !== W.deadline).map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows.map((c) => incidentRow(c, withDeadline)) : h("tr", {}, h("td", {colspan: withDeadline ? 10 : 9}, W.none))));
  const sources = h("ul", {class: "sources"}, data.sources.map((s) =>
    h("li", {class: s.ok ? "ok" : "bad", "data-source": s.name}, `${s.name}: ${s.ok ? W.ok : W.failing} · ${W.lastPoll} ${s.last_ok_local || "-"}${s.error ? " · " + s.error : ""}`,
      clockOffsetNote(s.clock_offset))));
  const ob = data.outbox;
  const outbox = h("div", {id: "outbox"},
    `${W.pending} ${(ob.pending || 0) + (ob.inflight || 0)} · ${W.sent} ${ob.sent || 0} · ${W.dead} ${ob.dead || 0} · ${W.silenced} ${ob.silenced || 0} · ${W.held} ${ob.held || 0} · ${W.withdrawn} ${ob.withdrawn || 0} · ${W.superseded} ${ob.superseded || 0}`,
    MAY_ACT && ob.dead ? h("button", {id: "retry-dead", onclick: retryDead}, `${W.retry} (${ob.dead})`) : null,
    h("a", {href: "#/outbox", id: "outbox-link"}, W.outboxList));
  const storm = MAY_ACT ? h("button", {id: data.storm ? "storm-end" : "storm-declare",
    onclick: () => act("/api/storm", {declare: !data.storm})}, data.storm ? W.endStorm : W.declare) : null;
  return h("div", {class: "overview"},
    h("section", {}, h("h2", {}, `${W.incidents} (${data.incidents.length}) · ${data.totals.customers} ${W.customers}`), table(data.incidents)),
    h("section", {}, h("h2", {}, W.planned), table(data.planned, false)),
    h("section", {class: "side"}, h("h2", {}, W.sources), sources, h("h2", {}, W.outbox), outbox,
      h("div", {class: "actions"}, storm, MAY_ACT ? openForm() : h("p", {class: "muted"}, W.viewerNote)),
      h("h2", {}, W.silences), h("div", {id: "silences"}, silencesPanel(data.silences || [])),
      h("h2", {id: "to-close-head"}, `${W.toClose} (${toCloseCount(data)})`),
      h("ul", {id: "to-close"}, (data.to_close || []).map((t) => h("li", {},
        h("a", {href: `#/incident/${encodeURIComponent(t.id)}`}, t.id), ` ${t.feeder_name} · ${t.status} · ${t.end_local || ""}`))),
      h("h2", {}, `${W.quarantine} (${data.quarantine ? data.quarantine.total : 0})`),
      h("ul", {id: "quarantine"}, (data.quarantine ? data.quarantine.latest : []).map(quarantineItem))));
}

// A quarantined record: a processing failure's stored event may be put back for the daemon
// (quarantine retry); any other says why not.
function quarantineItem(q) {
  return h("li", {"data-quarantine": String(q.id)}, `#${q.id} ${q.at} · ${q.source} · ${q.reason}${q.repeats ? ` · ${W.again(q.repeats, q.last_seen)}` : ""} `,
    q.retry ? (MAY_ACT ? h("button", {type: "button", class: "small quarantine-retry", "data-quarantine": String(q.id),
      onclick: () => act("/api/quarantine/retry", {ids: [q.id]})}, W.quarantineRetry) : null)
      : h("span", {class: "muted not-retried"}, `${W.notRetried}: ${q.not_retried}`));
}

function silencesPanel(rows) {
  const items = rows.map((x) => h("li", {}, `${W.matchers[x.matcher] || x.matcher} ${x.value} · ${W.until} ${x.ends_at} · ${x.actor}: ${x.reason}${x.force ? " ⚠" : ""} `,
    MAY_ACT ? h("button", {type: "button", class: "small", onclick: () => act("/api/silences", {expire: x.id})}, W.expire) : null));
  if (!MAY_ACT) return h("ul", {}, items);
  const matcher = h("select", {name: "matcher"}, Object.entries(W.matchers).map(([k, v]) => h("option", {value: k}, v)));
  const value = h("input", {name: "value", placeholder: "ID"});
  const until = h("input", {type: "datetime-local", name: "until"});
  const reason = h("input", {name: "reason", placeholder: W.reason});
  const force = h("input", {type: "checkbox", name: "force"});
  return h("div", {}, h("ul", {}, items), h("form", {class: "inline-form", id: "silence-form", onsubmit: (ev) => {
    ev.preventDefault();
    act("/api/silences", {matcher: matcher.value, value: value.value, until: until.value.replace("T", " "), reason: reason.value, force: force.checked});
  }}, matcher, value, until, reason, h("label", {}, force, W.force), h("button", {type: "submit"}, W.add)));
}

// The messages waiting on a person, whatever incident they belong to (a daily report, a
// template alert, a digest have none): dead, held, silenced, or what the status link asks.
const OUTBOX_VIEWS = ["dead,held,silenced", "dead", "held", "silenced", "pending", "withdrawn"];

async function outboxView(status) {
  const page = await api(`/api/outbox?status=${encodeURIComponent(status)}&limit=200`);
  const links = OUTBOX_VIEWS.map((s) => h("a", {href: `#/outbox?status=${s}`, class: s === status ? "current" : ""}, s.split(",").map((x) => W[x] || x).join("/")));
  return h("div", {class: "outbox-view", id: "outbox-view"}, h("h1", {}, W.outbox),
    h("p", {}, links.flatMap((a) => [a, " "])),
    page.next_before !== null ? h("p", {class: "muted"}, W.outboxMore) : null,
    noticesSection(page.messages, true));
}

// Every dead letter, read page by page (the outbox answers a page at a time, newest first).
async function retryDead() {
  const ids = [];
  let before = null;
  do {
    const page = await api(`/api/outbox?status=dead&limit=500${before === null ? "" : "&before=" + before}`);
    ids.push(...page.messages.map((m) => m.id));
    before = page.next_before;
  } while (before !== null);
  // Those that may go go; the answer names the rest (out of date, recipient gone) and why.
  await act("/api/outbox/retry", {ids, partial: true});
}

function openForm() {
  const feeder = h("input", {name: "feeder", placeholder: W.feeder});
  const areas = h("input", {name: "transformers", placeholder: W.transformers});
  const caller = h("input", {name: "caller", placeholder: W.caller});
  return h("form", {class: "inline-form", id: "open-form", onsubmit: (ev) => {
    ev.preventDefault();
    act("/api/incidents", {feeder: feeder.value, transformers: areas.value, caller: caller.value});
  }}, feeder, areas, caller, h("button", {type: "submit"}, W.open));
}

// -- incident ----------------------------------------------------------------------------------

function section(title, ...content) { return h("section", {}, h("h2", {}, title), ...content); }

function list(items, fn) { return items.length ? h("ul", {}, items.map((x) => h("li", {}, fn(x)))) : h("p", {class: "muted"}, W.none); }

// Shown of all awaiting close-out: "50 / 63" when the list (the latest of a week) is not all.
function toCloseCount(data) {
  const shown = (data.to_close || []).length, total = data.to_close_total ?? shown;
  return total > shown ? `${shown} / ${total} ${W.toCloseAll}` : `${shown}`;
}

function incidentView(c) {
  const head = h("div", {class: "card"},
    h("h1", {}, `${c.id} · ${c.kind_label} · ${c.stage_label}`),
    c.parent ? h("p", {id: "reopens"}, `${W.reopens} `, h("a", {href: `#/incident/${encodeURIComponent(c.parent)}`}, c.parent)) : null,
    h("p", {}, `${W.feeder}: ${c.feeder_name} · ${W.point}: ${pointText(c)}`),
    c.devices.length ? h("p", {id: "certainty"}, `${W.certainty}: ${certaintyText(c)}`) : null,
    (c.unexplained || []).length ? h("p", {id: "unexplained", class: "warn"}, `${W.unexplained}: ${c.unexplained.join("、")}`) : null,
    (c.disputed || []).length ? h("p", {id: "disputed", class: "warn"}, `${W.disputed}: ${c.disputed.join("、")}`) : null,
    (c.disputed_held || []).length ? h("p", {id: "disputed-held", class: "warn"}, `${W.disputedHeld}: ${c.disputed_held.join("、")}`) : null,
    h("p", {}, `${W.customers}: ${c.customers} · ${W.villages}: ${(c.villages.length ? c.villages : c.villages_all).map((v) => v.name).join("、")}`),
    h("p", {class: `deadline ${deadlineClass(c.deadline, c.deadline_state)}`, "data-deadline": c.deadline || "", "data-state": c.deadline_state},
      `${W.deadline}: ${c.deadline_local || "-"} ${countdown(c.deadline, c.deadline_state)}`),
    h("p", {}, `${W.etr}: ${c.etr_local || "-"} · ${W.crew}: ${c.crew_name || "-"}${c.cause ? " · " + W.cause + ": " + c.cause : ""}`));
  return h("div", {class: "incident"}, head,
    c.status === "active" || ["restored", "cancelled", "closed"].includes(c.stage) ? (MAY_ACT ? actionsPanel(c) : h("p", {class: "muted", id: "read-only"}, W.viewerNote)) : null,
    section(W.hypotheses, list(c.hypotheses, (x) => `${x.devices.map((d) => d.name).join("、")} · ${W.prob} ${x.probability_label} · ${x.customers} ${W.customers}` +
      (x.only_here.length ? ` · ${W.onlyHere}: ${x.only_here.join("、")}` : "") + (x.only_first.length ? ` · ${W.onlyFirst}: ${x.only_first.join("、")}` : ""))),
    section(W.section, list(c.section, (d) => d.name)),
    section(W.areas, h("table", {class: "grid"}, h("tbody", {}, c.areas.map((a) =>
      h("tr", {class: a.unconfirmed || a.continued ? "unconfirmed" : a.restored ? "back" : `mark-${a.mark}`}, h("td", {}, a.name), h("td", {}, a.village), h("td", {class: "num"}, a.customers),
        h("td", {}, a.unconfirmed ? W.unconfirmed : a.continued ? [`${W.continued} `, h("a", {href: `#/incident/${encodeURIComponent(a.continued)}`}, a.continued)]
          : a.restored ? `${W.back} ${a.restored}` : a.mark)))))),
    section(W.answers, list(c.answers || [], (a) => `${a.at} · ${a.village} ${a.area}: ${a.answer_label}${a.note ? " · " + a.note : ""}`)),
    section(W.photos, photoGrid(c.photos || [])),
    section(W.care, list(c.care, (p) => `${p.name} ${p.phone} · ${p.tags.join(",")} · ${p.area}`)),
    section(W.timeline, list(c.timeline, (e) => `${e.at} · ${e.stage_label} · ${e.actor}${e.note ? " · " + e.note : ""}${e.details ? " · " + e.details : ""}`)),
    section(W.evidence, list(c.evidence, (e) => `${e.at} · ${e.source} · ${e.signal} · ${e.status} · ${e.device || ""} ${e.transformers.slice(0, 6).join(",")} ${e.text}`)),
    noticesSection(c.notices));
}

// The incident's messages, each with the buttons its status allows: hold or withdraw one not
// sent yet, release a held one, retry a dead or silenced one (one reason box for them all, and
// one force box: a retry or release the refusal said "force" sends anyway — out of date, or a
// silence in force).
function noticesSection(notices, withIncident = false) {
  const reason = MAY_ACT ? h("input", {name: "outbox_reason", id: "outbox-reason", placeholder: W.outboxReason}) : null;
  const force = MAY_ACT ? h("input", {type: "checkbox", name: "outbox_force", id: "outbox-force"}) : null;
  const control = (m, action, label) => h("button", {type: "button", class: `small ${action}`, "data-message": String(m.id),
    onclick: () => act(`/api/outbox/${action}`, {ids: [m.id], ...(action === "withdraw" || action === "hold" ? {reason: reason.value} : {force: force.checked})})}, label);
  const buttons = (m) => !MAY_ACT ? [] : [
    m.status === "pending" ? control(m, "hold", W.hold) : null,
    m.status === "held" ? control(m, "release", W.release) : null,
    m.status === "dead" || m.status === "silenced" ? control(m, "retry", W.retry) : null,
    ["pending", "held", "dead", "silenced"].includes(m.status) ? control(m, "withdraw", W.withdraw) : null];
  const target = (m) => (m.readdressed || []).length ? `${m.target} (${W.readdressed} ${m.readdressed.map((x) => x.from).join(", ")})` : m.target;
  return section(W.notices, reason, force ? h("label", {class: "force"}, force, W.outboxForce) : null, h("table", {class: "grid", id: "notices"}, h("tbody", {}, notices.map((m) =>
    h("tr", {class: `status-${m.status}`, "data-message": String(m.id)}, h("td", {}, m.id),
      withIncident ? h("td", {}, m.incident ? h("a", {href: `#/incident/${encodeURIComponent(m.incident)}`}, m.incident) : "") : null,
      h("td", {}, m.status), h("td", {}, m.purpose), h("td", {}, m.channel),
      h("td", {}, target(m)), h("td", {}, m.attempts), h("td", {}, m.sent_at || ""), h("td", {}, m.error),
      h("td", {class: "said"}, said(m)), h("td", {}, buttons(m)))))));
}

// The crews' and liaisons' photos: a thumbnail each (who, when, which device or area); a click
// opens the photo at full size. Both are served to signed-in staff only.
function photoGrid(photos) {
  if (!photos.length) return h("p", {class: "muted"}, W.none);
  return h("div", {class: "photo-grid", id: "photos"}, photos.map((p) =>
    h("figure", {class: "shot"},
      h("a", {href: p.url, target: "_blank", rel: "noopener"}, h("img", {src: p.thumb, alt: `${W.photos} ${p.at}`, loading: "lazy"})),
      h("figcaption", {}, `${p.at} · ${p.by}${p.where ? " · " + p.where : ""}`))));
}

// Exactly what a message says (or will say): its first line, the whole text on a click. An
// SMS carries no text of ours, only its purpose's template and the template's parameters.
function said(m) {
  const text = m.sms ? smsText(m.sms) : [m.subject, m.text].filter(Boolean).join("\n");
  if (!text) return "";
  const first = text.split("\n")[0];
  return h("details", {"data-message": String(m.id)}, h("summary", {}, first),
    h("pre", {class: "said-text"}, text + (m.mentions.length ? `\n@ ${m.mentions.join(" @ ")}` : "")));
}

function smsText(sms) {
  return [`${W.smsTemplate} ${sms.template}`, ...Object.entries(sms.params).map(([k, v]) => `\${${k}}: ${v}`)].join("\n");
}

function actionsPanel(c) {
  const base = `/api/incidents/${encodeURIComponent(c.id)}`;
  const note = h("input", {name: "note", placeholder: W.note});
  const button = (id, label, fn) => h("button", {id, type: "button", onclick: fn}, label);
  // What the command centre set, beside its clear button (the same rules as setting it).
  const clearing = (id, shown, title, action) => h("span", {class: "set-now", id: `${id}-set`}, `${W.setNow}: ${shown} `,
    h("button", {id: `act-${id}-clear`, type: "button", title, onclick: () => act(`${base}/${action}`, {clear: true, note: note.value})}, W.clear));
  const crew = h("select", {name: "crew"}, h("option", {value: ""}, W.best), c.crews.map((k) => h("option", {value: k.id}, `${k.name} (${k.id})${k.covers ? "" : " · " + W.otherArea}`)));
  const off = c.areas.filter((a) => !a.restored);
  const picks = off.map((a) => h("label", {class: "pick"}, h("input", {type: "checkbox", name: "area", value: a.id, checked: true}), a.name));
  const etr = h("input", {type: "datetime-local", name: "etr"});
  const more = h("input", {name: "add", placeholder: W.transformers});
  const reason = h("input", {name: "reason", placeholder: W.reason});
  // No supply lost at all (the reports count nothing) is the operator's word: a duplicate
  // work order cancelled still counts what a source saw off.
  const falseAlarm = h("input", {type: "checkbox", name: "false_alarm", id: "cancel-false-alarm"});
  const cause = h("select", {name: "cause"}, CAUSES.map((k) => h("option", {value: k}, k)));
  // Several devices in a storm: every one the crews found (the localiser learns how many a storm takes);
  // one the estimate never named (the crews found it elsewhere) typed by id or name.
  const found = devicePicker(c, "device");
  // The fault point the command centre knows better (SCADA, a crew's call): the crew gets new orders.
  const fault = devicePicker(c, "fault_device");
  const ticked = (boxes) => boxes.map((p) => p.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
  const chosen = () => ticked(picks);
  // Areas recorded back that are still off (a mistaken restoration): none ticked by default.
  const back = c.areas.filter((a) => a.restored).map((a) => h("label", {class: "pick"}, h("input", {type: "checkbox", name: "back", value: a.id}), a.name));
  // Supply lost again after a real return (another spell in the reports) is the operator's
  // word, not the default: unticked, the restoration recorded was the mistake.
  const again = h("input", {type: "checkbox", name: "again", id: "reopen-again"});
  const reopen = back.length && c.stage !== "closed" ? h("div", {class: "row", id: "reopen-row"}, back,
    h("label", {}, again, W.lostAgain),
    button("act-reopen", W.reopen, () => act(`${base}/reopen`, {transformers: ticked(back), note: note.value, ...(again.checked ? {again: true} : {})}))) : null;
  // Counted back when the records ended, nothing saying so: the command centre's word confirms them.
  const unsure = c.areas.filter((a) => a.unconfirmed).map((a) => h("label", {class: "pick"}, h("input", {type: "checkbox", name: "unconfirmed", value: a.id, checked: true}), a.name));
  // Closing out with such areas is a choice the close-out's record keeps, not a default.
  const anyway = unsure.length ? h("input", {type: "checkbox", name: "unconfirmed_ok", id: "close-unconfirmed-ok"}) : null;
  // Devices that do not feed every area confirmed off are refused unless the crew found it so.
  const deviceAnyway = (id) => h("input", {type: "checkbox", name: "device_anyway", id});
  const unfed = deviceAnyway("close-device-anyway");
  const closing = h("div", {class: "row"}, h("label", {}, W.cause, cause), h("label", {}, W.device, found.select), found.other,
    h("label", {}, unfed, W.deviceAnyway),
    anyway ? h("label", {}, anyway, W.closeUnconfirmed) : null,
    button("act-close", W.close, () => act(`${base}/close`, {cause: cause.value, device: found.value(), note: note.value, ...(anyway && anyway.checked ? {unconfirmed_ok: true} : {}), ...(unfed.checked ? {device_anyway: true} : {})})));
  const confirm = unsure.length ? h("div", {class: "row", id: "confirm-row"}, unsure,
    button("act-confirm", W.confirmBack, () => act(`${base}/restore`, {transformers: ticked(unsure), note: note.value}))) : null;
  // Closed out already: only the close-out itself may be corrected (the latest counts), its
  // form holding what the close-out said, so that correcting one thing keeps the rest.
  if (c.stage === "closed") {
    const was = h("select", {name: "cause"}, [...new Set([c.cause, ...CAUSES].filter(Boolean))].map((k) => h("option", {value: k, selected: k === c.cause}, k)));
    const said = devicePicker(c, "device", c.found);
    const amendUnfed = deviceAnyway("amend-device-anyway");
    return h("section", {class: "actions", id: "actions"}, h("h2", {}, W.actions), h("div", {class: "row"}, note),
      h("div", {class: "row"}, h("label", {}, W.cause, was), h("label", {}, W.device, said.select), said.other,
        h("label", {}, amendUnfed, W.deviceAnyway),
        button("act-amend-close", W.amendClose, () => act(`${base}/close`, {cause: was.value, device: said.value(), note: note.value, amend: true, ...(amendUnfed.checked ? {device_anyway: true} : {})}))));
  }
  if (c.status !== "active") return h("section", {class: "actions", id: "actions"}, h("h2", {}, W.actions), h("div", {class: "row"}, note), c.status === "restored" ? confirm : null, c.status === "restored" ? reopen : null, closing);
  return h("section", {class: "actions", id: "actions"}, h("h2", {}, W.actions),
    h("div", {class: "row"}, note,
      button("act-ack", W.ack, () => act(`${base}/ack`, {note: note.value})),
      crew, button("act-dispatch", W.dispatch, () => act(`${base}/dispatch`, {crew: crew.value, note: note.value})),
      button("act-arrive", W.arrive, () => act(`${base}/arrive`, {note: note.value}))),
    off.length ? h("div", {class: "row"}, picks, button("act-restore", W.restore, () => act(`${base}/restore`, {transformers: chosen(), note: note.value})),
      button("act-scope", W.scopeRemove, () => act(`${base}/scope`, {remove: chosen(), note: note.value}))) : null,
    reopen,
    h("div", {class: "row"}, more, button("act-scope-add", W.scopeAdd, () => act(`${base}/scope`, {add: more.value, note: note.value}))),
    c.kind === "fault" ? h("div", {class: "row", id: "device-row"}, h("label", {}, W.faultDevice, fault.select), fault.other,
      button("act-device", W.setDevice, () => act(`${base}/device`, {devices: fault.value(), note: note.value})),
      c.device_set.length ? clearing("device", c.device_set.map((d) => d.name).join("、"), W.clearDevice, "device") : null) : null,
    h("div", {class: "row"}, etr, button("act-etr", W.setEtr, () => act(`${base}/etr`, {time: etr.value.replace("T", " "), note: note.value})),
      c.etr_set ? clearing("etr", c.etr_set, W.clearEtr, "etr") : null,
      reason, h("label", {}, falseAlarm, W.falseAlarm),
      button("act-cancel", W.cancel, () => act(`${base}/cancel`, {reason: reason.value, ...(falseAlarm.checked ? {false_alarm: true} : {})}))));
}

// -- map ---------------------------------------------------------------------------------------

let MAP = null;
const DETAIL = new Map();  // feeder ids -> their detail (large bundles)

async function mapData(feeders) {
  if (!MAP) MAP = await api("/api/map");
  if (MAP.level !== "county" || !feeders.length) return [MAP];
  const key = [...feeders].sort().join(",");
  if (!DETAIL.has(key)) DETAIL.set(key, await api(`/api/map?feeders=${encodeURIComponent(key)}`));
  return [MAP, DETAIL.get(key)];
}

async function mapView() {
  const data = await api("/api/overview");
  const off = new Map();
  const suspect = new Set();
  const offVillages = new Set(data.incidents.flatMap((c) => c.villages.map((v) => v.id)));
  const detail = await Promise.all(data.incidents.slice(0, 50).map((c) => api(`/api/incidents/${encodeURIComponent(c.id)}`)));
  for (const c of detail) {
    for (const a of c.areas) if (!a.restored) off.set(a.id, c.id);
    for (const d of [...c.devices, ...c.section]) suspect.add(d.id);
  }
  const layers = await mapData([...new Set(data.incidents.map((c) => c.feeder))]);
  const base = layers[0];
  const geo = base.mode === "geo";
  // Geographic maps use the Web Mercator y (so intranet tiles line up); schematic ones as is.
  const merc = (lat) => Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 360)) * 180 / Math.PI;
  const PY = geo ? merc : (y) => y;
  const [x0, b0, x1, b1] = base.bounds;
  const y0 = PY(b0), y1 = PY(b1);
  const W_ = 1000, H_ = 700, pad = 20;
  const sx = (W_ - 2 * pad) / Math.max(x1 - x0, 1e-9), sy = (H_ - 2 * pad) / Math.max(y1 - y0, 1e-9);
  const s = geo ? Math.min(sx, sy) : null;
  const X = (x) => pad + (x - x0) * (geo ? s : sx);
  const Y = (y) => geo ? H_ - pad - (PY(y) - y0) * s : pad + (y - y0) * sy;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W_} ${H_}`);
  svg.setAttribute("id", "map-svg");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text) el.textContent = text;
    svg.append(el);
    return el;
  };
  if (geo && base.tile_url) tiles(base.tile_url, x0, x1, b0, b1, X, Y, add);
  for (const layer of layers) {
    for (const f of layer.feeders) {
      const d = f.lines.map(([a, b, c, e]) => `M${X(a).toFixed(1)},${Y(b).toFixed(1)}L${X(c).toFixed(1)},${Y(e).toFixed(1)}`).join("");
      add("path", {d, class: layer.level === "county" ? "feeder county" : "feeder"}).append(Object.assign(document.createElementNS(NS, "title"), {textContent: f.name}));
    }
  }
  for (const layer of layers) {
    for (const [id, x, y] of layer.devices) if (suspect.has(id)) add("circle", {cx: X(x), cy: Y(y), r: 7, class: "suspect"});
    for (const [id, x, y] of layer.areas) add("circle", {cx: X(x), cy: Y(y), r: off.has(id) ? 4 : 2.5, class: off.has(id) ? "area off" : "area"});
    for (const [, x, y] of layer.sources) add("rect", {x: X(x) - 5, y: Y(y) - 5, width: 10, height: 10, class: "substation"});
  }
  if (base.level === "county") {
    for (const [id, , x, y, n] of base.villages) add("circle", {cx: X(x), cy: Y(y), r: Math.min(2 + Math.sqrt(n), 8), class: offVillages.has(id) ? "area off" : "area"});
  }
  for (const [, name, x, y] of base.villages) add("text", {x: X(x) + 4, y: Y(y) - 4, class: "village"}, name);
  for (const c of detail) {
    const crew = c.crew_position;
    if (crew && geo) add("text", {x: X(crew[0]), y: Y(crew[1]), class: "crew"}, `▲ ${c.crew_name || ""}`);
  }
  return h("div", {class: "map"}, h("h2", {}, `${W.map} · ${off.size} ${W.off}`), svg);
}

// Tiles of an intranet tile server ({z}/{x}/{y}), drawn under the network when configured.
function tiles(url, lon0, lon1, lat0, lat1, X, Y, add) {
  const span = Math.max(lon1 - lon0, 1e-6);
  const z = Math.max(1, Math.min(18, Math.round(Math.log2((5 * 360) / span))));
  const n = 2 ** z;
  const tx = (lon) => Math.floor(((lon + 180) / 360) * n);
  const ty = (lat) => { const r = (lat * Math.PI) / 180; return Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n); };
  const lonOf = (x) => (x / n) * 360 - 180;
  const latOf = (y) => (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;
  for (let x = tx(lon0); x <= tx(lon1); x++) {
    for (let y = ty(lat1); y <= ty(lat0); y++) {
      const left = X(lonOf(x)), top = Y(latOf(y));
      add("image", {href: url.replace("{z}", z).replace("{x}", x).replace("{y}", y), x: left, y: top,
        width: X(lonOf(x + 1)) - left, height: Y(latOf(y + 1)) - top, preserveAspectRatio: "none", class: "tile"});
    }
  }
}

// -- routing and live updates ------------------------------------------------------------------

let rendering = false, again = false, freshForms = false, shownRoute = null;
// A live update replacing the page between a button's press and its release would swallow the
// click (the operator clicks and nothing happens, in a storm most of all): while a pointer is
// down the new page waits, and is shown once the click has been delivered.
// A press held longer than a click (or released outside the window) holds nothing.
let pressed = false, heldRender = false, pressTimer = null;
document.addEventListener("pointerdown", (e) => {
  if (!e.target.closest || !e.target.closest("#view button, #view a, #view summary, #view label")) return;
  pressed = true;
  clearTimeout(pressTimer);
  pressTimer = setTimeout(released, 1500);
}, true);
function released() {
  pressed = false;
  clearTimeout(pressTimer);
  // After the click event (it follows pointerup in the same task), not before it.
  setTimeout(() => { if (heldRender && !pressed) { heldRender = false; render(); } }, 0);
}
document.addEventListener("pointerup", released, true);
document.addEventListener("pointercancel", released, true);

// A live update re-renders the page: what an operator is typing or has ticked (a note, the
// devices of a close-out, the areas to restore) is carried over to the new page by name.
function controlKey(el) { return `${el.name}|${el.type === "checkbox" ? el.value : ""}`; }

function controls(root) {
  return [...root.querySelectorAll("input[name], select[name], textarea[name]")]
    .filter((el) => el.type !== "password" && el.type !== "file");
}

function formState(root) {
  const state = new Map();
  for (const el of controls(root)) {
    state.set(controlKey(el), el.type === "checkbox" ? el.checked
      : el.multiple ? [...el.selectedOptions].map((o) => o.value) : el.value);
  }
  return state;
}

function restoreForms(root, state) {
  for (const el of controls(root)) {
    const key = controlKey(el);
    if (!state.has(key)) continue;
    const v = state.get(key);
    if (el.type === "checkbox") el.checked = v;
    else if (el.multiple) for (const o of el.options) o.selected = v.includes(o.value);
    else if (el.tagName !== "SELECT" || [...el.options].some((o) => o.value === v)) el.value = v;
  }
}

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  try {
    const route = window.location.hash.replace(/^#/, "") || "/";
    let view;
    if (route.startsWith("/incident/")) {
      view = incidentView(await api(`/api/incidents/${route.slice(10)}`));
    } else if (route === "/map") {
      view = await mapView();
    } else if (route.startsWith("/outbox")) {
      view = await outboxView(new URLSearchParams(route.split("?")[1] || "").get("status") || "dead,held,silenced");
    } else {
      const data = await api("/api/overview");
      const banner = document.getElementById("storm-banner");
      banner.hidden = !data.storm;
      banner.textContent = data.storm ? `${W.storm}: ${data.storm.by || ""} ${data.storm.note || ""}` : "";
      view = overviewView(data);
    }
    const holder = document.getElementById("view");
    if (pressed) { heldRender = true; return; }
    const kept = route === shownRoute && !freshForms ? formState(holder) : null;
    const focused = document.activeElement && holder.contains(document.activeElement) ? document.activeElement.name : null;
    // A notice's text the operator opened stays open through the live updates.
    const opened = route === shownRoute ? [...holder.querySelectorAll("details[open][data-message]")].map((d) => d.dataset.message) : [];
    freshForms = false;
    holder.replaceChildren(view);
    shownRoute = route;
    for (const id of opened) view.querySelector(`details[data-message="${CSS.escape(id)}"]`)?.setAttribute("open", "");
    if (kept) restoreForms(view, kept);
    if (kept && focused) view.querySelector(`[name="${CSS.escape(focused)}"]`)?.focus();
    BODY.dataset.rendered = String(Date.now());
  } catch (e) {
    flash(e.message, true);
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

function tick() {
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const iso = el.dataset.deadline;
    if (!iso) continue;
    el.classList.remove("ok", "amber", "red");
    el.classList.add(deadlineClass(iso, el.dataset.state));
    if (el.tagName === "TD") el.textContent = countdown(iso, el.dataset.state);
  }
}

function connect() {
  const conn = document.getElementById("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => { conn.textContent = W.live; conn.className = "conn up"; render(); });
  source.addEventListener("change", () => render());
  source.onerror = () => { conn.textContent = W.lost; conn.className = "conn down"; };
}

window.addEventListener("hashchange", render);
setInterval(tick, 1000);
render();
connect();
