"""Configuration: a YAML file validated by pydantic.

Every key is checked at start; unknown keys are rejected; errors name the key path and what
was expected (``sources[0].interval_seconds: Input should be greater than 0``). ``${VAR}`` and
``${VAR:-default}`` in string values are replaced from the environment, so secrets (webhook
keys, SMS credentials, database passwords) never sit in the committed file.

Relative paths in the config are resolved against the directory of the config file.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from outage_sentinel.logs import redact_secrets, register_secret

if TYPE_CHECKING:  # the pure modules are imported lazily in to_weights()/to_params()
    from outage_sentinel.crew import DispatchParams
    from outage_sentinel.localise import LocaliserParams
    from outage_sentinel.priority import PriorityWeights


#: Upper bounds of durations, so every one fits what the scheduler and ``datetime`` can hold
#: (``interval_seconds: 1e400`` or ``window_minutes: 1e300`` passed validation and then
#: stopped the daemon at start with an OverflowError). A year is more than any real setting.
MAX_SECONDS = 366 * 24 * 3600.0
MAX_MINUTES = MAX_SECONDS / 60
MAX_HOURS = MAX_SECONDS / 3600
#: Byte limits (a terabyte) and priority weights: far above any sensible value, finite.
MAX_BYTES = 1 << 40
MAX_WEIGHT = 1e6
#: Road speed in km/h (a speed near 0 made travel times overflow a timedelta).
MAX_SPEED = 300.0
#: Longest problem line shown; a longer one is cut and the rest counted.
MAX_PROBLEM_CHARS = 500
#: Longest key shown in a problem's key path (the place must fit before the message).
MAX_KEY_CHARS = 80
#: Values (scalars, sequence items, mapping keys and values) a YAML document may expand to
#: once its aliases are followed: a 432-byte "billion laughs" expands to 10^9.
MAX_YAML_VALUES = 100_000


class KeyProblems(ValueError):
    """Problems a validator found with keys of its model (``(key path below the model's,
    message)``; an empty key path: the model's own place, or at the root a message that names
    its keys itself): placed at their keys in :class:`ConfigError`, not at the model's own
    place with pydantic's ``Value error,``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in problems))


class ConfigError(Exception):
    """The config is unusable; ``problems`` lists ``key.path: what was expected`` lines."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = [_clip(p) for p in problems]
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in config:\n{body}")


def _clip(text: str) -> str:
    if len(text) <= MAX_PROBLEM_CHARS:
        return text
    return f"{text[:MAX_PROBLEM_CHARS]}… ({len(text) - MAX_PROBLEM_CHARS:,} more characters)"


def _masked(value: Any) -> Any:
    """``value`` for a repr, with every registered secret (``${ENV}`` values) masked."""
    if isinstance(value, str | Path):
        text = str(value)
        clean = redact_secrets(text)
        return value if clean == text else clean
    if isinstance(value, dict):
        return {_masked(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(v) for v in value)
    return value


class Strict(BaseModel):
    """Base of every config section: unknown keys rejected, immutable, finite numbers only,
    and a ``repr`` that never shows a value read from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, _masked(value)


# -- sources ------------------------------------------------------------------------------------


class SourceBase(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    interval_seconds: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    #: A poll still running this long after its scheduled time is skipped, not queued.
    misfire_grace_seconds: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    enabled: bool = True


class RetryConfig(Strict):
    """Exponential backoff with jitter (see :mod:`outage_sentinel.retry`)."""

    initial_seconds: float = Field(default=2.0, gt=0, le=MAX_SECONDS)
    multiplier: float = Field(default=2.0, ge=1, le=100)
    max_seconds: float = Field(default=300.0, gt=0, le=MAX_SECONDS)
    jitter: float = Field(default=0.2, ge=0, le=1)
    #: How long a message may keep failing before it is dead-lettered.
    max_age_seconds: float = Field(default=6 * 3600.0, gt=0, le=MAX_SECONDS)
    #: For source polls: attempts within one poll before the poll is counted failed.
    max_attempts: int = Field(default=3, ge=1, le=1000)


class FieldMap(Strict):
    """Where the normalised fields come from in one record (dotted paths into the JSON)."""

    event_id: str
    kind: str | None = None
    status: str | None = None
    start: str
    expected_restoration: str | None = None
    end: str | None = None
    feeder: str | None = None
    device: str | None = None
    transformers: str | None = None
    #: One path, or several whose non-empty values are joined with "；" (e.g. area + range).
    area_text: str | list[str] | None = None
    cause: str | list[str] | None = None
    revision: str | None = None
    #: Map raw values of ``kind`` to planned|temporary|fault.
    kind_values: dict[str, Literal["planned", "temporary", "fault"]] = Field(default_factory=dict)
    #: Map raw values of ``status`` to active|restored|cancelled.
    status_values: dict[str, Literal["active", "restored", "cancelled"]] = Field(default_factory=dict)
    default_kind: Literal["planned", "temporary", "fault"] = "fault"
    default_status: Literal["active", "restored", "cancelled"] = "active"
    #: What the records are: outage notices, or trouble calls (95598 / customer-service work
    #: orders: evidence for the localiser, never an incident on their own).
    signal: Literal["notice", "call"] = "notice"
    #: A customer number and a meter number the call came from: placed in their transformer
    #: area through customers.csv / meters.csv (like ``transformers``, which may name the area).
    customer: str | None = None
    meter: str | None = None
    #: The work order's category (无电, 电压低, 电费…). With a category path, only records whose
    #: category contains one of ``outage_categories`` and none of ``not_outage_categories``
    #: are outage evidence; the others are counted and skipped (a low-voltage complaint is not
    #: a dead area).
    category: str | None = None
    outage_categories: list[str] = Field(default_factory=lambda: [
        "无电", "停电", "没电", "断电", "缺相", "全部停电", "部分停电", "no power", "outage"])
    #: Checked first: a category naming one household's own fault (单户无电, 低压故障-单户停电,
    #: 表后开关跳闸, 入户线故障, 客户内部故障, 计量故障, 欠费停电) says nothing of its area,
    #: though it says 无电 or 停电: read as evidence it put a fault on the fuse above a lit
    #: area and told that area's village it was off.
    not_outage_categories: list[str] = Field(default_factory=lambda: [
        "单户", "表后", "入户", "进户", "户内", "客户内部", "用户内部", "非电力", "表计故障",
        "电能表故障", "计量故障", "欠费", "single household"])
    #: ...unless the category also says the outage is wider than one household (配变内部故障-
    #: 全部停电, 表计箱烧毁导致片区停电, 多户无电（表后开关正常）, 停电（非单户）): then it is
    #: evidence after all.
    area_outage_categories: list[str] = Field(default_factory=lambda: [
        "非单户", "多户", "全部", "片区", "台区", "整村", "全村", "配变", "变压器", "线路",
        "大面积", "several households", "whole area"])

    @model_validator(mode="after")
    def _categories_can_match(self) -> FieldMap:
        """An empty word matches every category (or, as an exclusion, none is evidence); an
        outage word containing an exclusion word can never match: refused, naming the word."""
        problems = [f"{name}: an empty word matches every category"
                    for name in ("outage_categories", "not_outage_categories",
                                 "area_outage_categories")
                    if any(not w.strip() for w in getattr(self, name))]
        dead = [w for w in self.outage_categories
                if any(x.strip() and x in w for x in self.not_outage_categories)]
        if dead:
            problems.append(f"outage_categories: {', '.join(map(repr, dead))} can never match: "
                            "each contains a word of not_outage_categories, checked first")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PaginationConfig(Strict):
    #: ``none`` | ``page`` (a page number query parameter, total pages read from the body).
    mode: Literal["none", "page"] = "none"
    page_param: str = "pageNow"
    #: Where the page number goes: the query string, or the JSON body (``method: POST``).
    page_location: Literal["query", "body"] = "query"
    #: Dotted path of the total page count in each page; None = fetch until an empty page.
    total_pages_path: str | None = None
    max_pages: int = Field(default=50, ge=1, le=100_000)


def _known_zone(name: str | None) -> None:
    """Refuse a timezone name that is not an IANA zone (None passes)."""
    if name is None:
        return
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
    except Exception:
        raise ValueError(f"timezone {name!r} is not a known IANA zone") from None


#: What an envelope's success code says on success, compared as lower-case text.
SUCCESS_VALUES: tuple[str | int | bool, ...] = ("0", "00", "0000", "200", "ok", "success", "true")


class HttpJsonSourceConfig(SourceBase):
    type: Literal["http_json"]
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    #: Read timeout (between bytes) and the limit on downloading one whole response.
    timeout_seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=MAX_SECONDS)
    max_response_bytes: int = Field(default=10 * 1024 * 1024, gt=0, le=MAX_BYTES)
    verify_tls: bool = True
    retry: RetryConfig = RetryConfig(initial_seconds=1.0, max_seconds=10.0, max_attempts=3)
    #: ``95598_list`` (seleList/pageModel), ``95598_powercut`` (data.powerCutList) or
    #: ``95598_workorder`` (trouble calls, data.records; see docs/sources_http.md); sets
    #: ``records_path``, ``fields`` and ``pagination`` unless given here.
    preset: Literal["95598_list", "95598_powercut", "95598_workorder"] | None = None
    records_path: str | None = None
    fields: FieldMap | None = None
    pagination: PaginationConfig | None = None
    #: Timezone of times without an offset in the feed.
    timezone: str | None = None
    #: The feed lists every current outage (as 95598 notice lists do): a record that is gone
    #: from a complete poll is over, and its incident is restored. False for feeds that only
    #: send changes.
    snapshot: bool = True
    #: Dotted path to the envelope's success flag or code (``code``, ``data.status``): a reply
    #: whose value there is not one of ``success_values`` failed, whatever its list says. The
    #: preset's when not given (``95598_powercut``: ``code``, with "1"), ``null`` for none.
    success_path: str | None = None
    success_values: list[str | int | bool] = Field(
        default_factory=lambda: list(SUCCESS_VALUES), min_length=1)
    #: Dotted path to the feed's count of all its records (``pageModel.totalCount``); the
    #: preset's when not given, ``null`` to read none. A snapshot poll that saw fewer rows
    #: than the feed counts ends no record.
    total_count_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _work_orders_are_no_snapshot(cls, data: Any) -> Any:
        # A list of recent work orders, not of current outages: a call that leaves the list
        # says nothing about the supply (``snapshot: true`` can still be given).
        if isinstance(data, dict) and data.get("preset") == "95598_workorder":
            data = {"snapshot": False, **data}
        return data

    @model_validator(mode="after")
    def _needs_mapping(self) -> HttpJsonSourceConfig:
        if self.preset is None and (self.fields is None or self.records_path is None):
            raise ValueError("give either 'preset' or both 'records_path' and 'fields'")
        _known_zone(self.timezone)
        return self


class ReplaySourceConfig(SourceBase):
    type: Literal["replay"]
    #: A JSON-lines scenario (see README.md, "A scenario line for replay").
    scenario: Path
    #: Timeline speed-up: 2.0 plays a 100 s scenario in 50 s.
    speed: float = Field(default=1.0, gt=0, le=1e6)
    #: Start the timeline again after the last line (for long-running demos).
    loop: bool = False
    interval_seconds: float = Field(default=5.0, gt=0, le=MAX_SECONDS)


AmiAction = Literal["off", "on", "off_on", "ignore"]


class AmiCodeConfig(Strict):
    """What one AMI event type code means (see docs/ami.md for the built-in codes)."""

    #: ``off`` power lost, ``on`` power restored, ``off_on`` a record carrying an off time and
    #: maybe an on time (DL/T 698.45 ``3106`` / Q/GDW 1376.1 ``ERC14``), ``ignore``.
    action: AmiAction
    #: Force the reporting device kind; ``None`` = from the meter registry or the payload.
    kind: Literal["meter", "terminal"] | None = None


class AmiPayloadConfig(Strict):
    """How AMI payloads (JSON objects, CSV rows) map to power-off / power-on observations.

    Each ``*_fields`` list holds dotted paths (or CSV column names) tried in order.
    """

    #: Code -> meaning, merged over the built-in defaults (``3.26.0.85`` off, ``3.26.0.216``
    #: on, ``ERC14``/``3106``/``3011`` off_on, ...). A plain string is the action.
    codes: dict[str, AmiCodeConfig | AmiAction] = Field(default_factory=dict)
    #: Use only ``codes``, not the built-in defaults.
    replace_default_codes: bool = False
    id_fields: list[str] = Field(default_factory=lambda: [
        "meter_id", "meterId", "meter", "terminal_id", "terminalId", "terminal", "device_id",
        "deviceId", "device", "Assets.mRID", "Assets.0.mRID", "EndDevice.mRID"])
    code_fields: list[str] = Field(default_factory=lambda: [
        "code", "event_code", "eventCode", "event_type", "eventType", "type",
        "EndDeviceEventType.ref", "EndDeviceEventType", "erc", "oi"])
    time_fields: list[str] = Field(default_factory=lambda: [
        "time", "event_time", "eventTime", "timestamp", "ts", "createdDateTime", "occurred"])
    off_time_fields: list[str] = Field(default_factory=lambda: [
        "off_time", "power_off_time", "offTime", "start_time", "startTime"])
    on_time_fields: list[str] = Field(default_factory=lambda: [
        "on_time", "power_on_time", "onTime", "end_time", "endTime", "restore_time"])
    kind_fields: list[str] = Field(default_factory=lambda: [
        "kind", "device_kind", "deviceKind", "device_type", "deviceType"])
    #: Dotted path to the list of records in a JSON payload; default: the payload itself if it
    #: is a list, else ``events``/``records``/``data``/``Payload.EndDeviceEvents.EndDeviceEvent``.
    records_path: str | None = None
    #: Column names for header-less CSV; ``None`` = the first line is the header.
    csv_columns: list[str] | None = None
    #: Timezone of times without an offset; ``None`` = the daemon's ``timezone``.
    timezone: str | None = None
    #: Codes not in the map (tamper, voltage, ... events) are skipped and counted, or
    #: quarantined.
    unknown_codes: Literal["ignore", "quarantine"] = "ignore"
    #: A meter / terminal id missing from ``meters.csv`` is quarantined, or kept without a
    #: transformer area.
    unknown_devices: Literal["quarantine", "keep"] = "quarantine"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        _known_zone(value)  # refused here, naming ``ami.timezone``, not when the source starts
        return value


class AmiScreenConfig(Strict):
    """Master-station screening of AMI observations (see :mod:`outage_sentinel.ami`)."""

    #: A transformer area is out when this many of its meters drop within ``window_seconds``.
    min_meters: int = Field(default=5, ge=1, le=1_000_000)
    #: When set, the threshold is this share of the area's registered meters instead.
    min_share: float | None = Field(default=None, gt=0, le=1)
    window_seconds: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    #: Outages shorter than this are momentary (reclosing) and dropped.
    min_duration_seconds: float = Field(default=60.0, ge=0, le=MAX_SECONDS)
    #: An area out by meters is restored when this share of its off meters report power on.
    restore_share: float = Field(default=0.5, gt=0, le=1)
    #: Forget a meter still off after this long (its restore report was lost).
    forget_after_hours: float = Field(default=72.0, gt=0, le=MAX_HOURS)
    #: How far reports of one outage may lag behind each other / behind the clock: a held
    #: outage is released only once it has been known this long (or the report stream is this
    #: far past its minimum duration), so a restore in transit can still cancel it.
    lateness_seconds: float = Field(default=15.0, ge=0, le=MAX_SECONDS)
    #: An outage first seen already older than ``min_duration_seconds + lateness_seconds`` (a
    #: concentrator's log uploaded after it reconnects) must be known this long instead of
    #: ``lateness_seconds`` before it is released, so the upload's power-ons can still arrive.
    backlog_hold_seconds: float = Field(default=120.0, ge=0, le=MAX_SECONDS)
    #: An area outage released (its village told) is restored only once the area has stayed
    #: on this long: an area that goes off again sooner (a loose or failing fuse, a
    #: transformer tripping on load pickup, minutes off and minutes on) carries on the same
    #: outage, so its village hears one outage and one restoration, timed at the last "on",
    #: not one pair per flicker. Five minutes covers the on-spells of a flapping area seen in
    #: the field (two minutes and more, longer than ``min_duration_seconds``); the cost is a
    #: restoration notice that much later. 0: restored at the first "on".
    restore_settle_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)


class MqttSourceConfig(SourceBase):
    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65536)
    topics: list[str] = Field(min_length=1)
    #: Fixed per daemon: the broker keeps the persistent session (and what arrived while the
    #: daemon was down) under this id.
    client_id: str = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_seconds: int = Field(default=60, gt=0, le=65535)
    #: MQTT ``5`` lets the client raise the broker's in-flight window (``receive_maximum``);
    #: with ``3.1.1`` Mosquitto sends only ``max_inflight_messages`` (default 20) unacknowledged
    #: messages at a time, and messages are acknowledged only after commit.
    protocol: Literal["5", "3.1.1"] = "5"
    receive_maximum: int = Field(default=65535, ge=1, le=65535)
    #: MQTT 5 session expiry: how long the broker keeps the session while the daemon is down.
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0, le=0xFFFFFFFF)
    #: ``json`` (one event or a list per message) or ``csv`` (lines).
    payload_format: Literal["json", "csv"] = "json"
    interval_seconds: float = Field(default=1.0, gt=0, le=MAX_SECONDS)
    max_batch: int = Field(default=5000, gt=0, le=1_000_000)
    ami: AmiPayloadConfig = AmiPayloadConfig()


class FileDropSourceConfig(SourceBase):
    type: Literal["file_drop"]
    directory: Path
    pattern: str = "*"
    interval_seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    #: Processed files are moved here (default ``<directory>/done``) ...
    done_dir: Path | None = None
    #: ... or here when unparseable as a whole (default ``<directory>/failed``).
    failed_dir: Path | None = None
    #: A file is read only once its size and mtime have not changed for this long.
    settle_seconds: float = Field(default=2.0, ge=0, le=MAX_SECONDS)
    max_files_per_poll: int = Field(default=50, gt=0, le=100_000)
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0, le=MAX_BYTES)
    #: ``auto``: by extension (``.csv`` CSV, ``.json``/``.jsonl``/``.ndjson`` JSON lines).
    format: Literal["auto", "csv", "jsonl"] = "auto"
    #: What the files hold: AMI meter/terminal events (``ami``), or trouble-call work orders
    #: (``work_orders``: one record per CSV row or JSON line, mapped by ``fields``, by default
    #: the ``95598_workorder`` preset's).
    content: Literal["ami", "work_orders"] = "ami"
    ami: AmiPayloadConfig = AmiPayloadConfig()
    fields: FieldMap | None = None
    #: Timezone of work-order times without an offset (default: the config's ``timezone``).
    timezone: str | None = None

    @model_validator(mode="after")
    def _zone(self) -> FileDropSourceConfig:
        _known_zone(self.timezone)
        return self


SourceConfig = Annotated[
    HttpJsonSourceConfig | ReplaySourceConfig | MqttSourceConfig | FileDropSourceConfig,
    Field(discriminator="type"),
]


# -- channels -----------------------------------------------------------------------------------


class ChannelBase(Strict):
    enabled: bool = True
    #: Bound on each request to the service (connect, and each wait for reply bytes); a hung
    #: service costs its own target this long per attempt, then the attempt is retried.
    timeout_seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS)


class FileChannelConfig(ChannelBase):
    type: Literal["file"]
    path: Path


class ConsoleChannelConfig(ChannelBase):
    type: Literal["console"]
    stream: Literal["stdout", "stderr"] = "stdout"


class WebhookChannelConfig(ChannelBase):
    type: Literal["webhook"]
    #: ``{target}`` in the URL is replaced by the recipient's target.
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: JSON key whose value must be 0/"ok"/true for success; None = any 2xx is success.
    success_field: str | None = None


class RobotChannelConfig(ChannelBase):
    """WeCom / DingTalk / Feishu group robots: one webhook per target group."""

    type: Literal["wecom", "dingtalk", "feishu"]
    #: Base URL of the service (override to point at a test server).
    base_url: str | None = None
    #: Per target group: the robot's key/access token and signing secret (``${ENV}`` only).
    robots: dict[str, RobotCredentials] = Field(default_factory=dict)
    #: Requests per minute per robot (WeCom 20, DingTalk 20, Feishu 100).
    per_minute: int | None = Field(default=None, gt=0, le=100_000)
    per_second: int | None = Field(default=None, gt=0, le=100_000)


class RobotCredentials(Strict):
    key: SecretStr
    secret: SecretStr | None = None


class SmsChannelConfig(ChannelBase):
    type: Literal["sms"]
    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com/", pattern=r"^https?://")
    #: Aliyun region of the SMS API (part of the signed request).
    region_id: str = "cn-hangzhou"
    access_key_id: SecretStr
    access_key_secret: SecretStr
    sign_name: str
    #: Fallback template code for purposes not listed in ``templates`` (the only key before
    #: per-purpose templates; such configs stay valid).
    template_code: str | None = None
    #: Template code per purpose (outage, planned, update, restored, cancelled, reminder,
    #: care, dispatch, command); parameters per purpose in docs/channels.md.
    templates: dict[str, str] = Field(default_factory=dict)
    #: Aliyun's quota: notifications per number per day per signature+template.
    per_number_per_day: int = Field(default=50, gt=0, le=100_000)

    @model_validator(mode="after")
    def _template_codes(self) -> SmsChannelConfig:
        from outage_sentinel.sms_params import PURPOSES

        for purpose, code in self.templates.items():
            if purpose not in PURPOSES:
                raise ValueError(f"templates.{purpose}: unknown purpose (one of "
                                 f"{', '.join(PURPOSES)})")
            if not code.strip():
                raise ValueError(f"templates.{purpose}: must not be empty")
        if not self.templates and not (self.template_code or "").strip():
            raise ValueError("give 'templates' (a code per purpose) or 'template_code'")
        return self

    def purposes_without_code(self) -> list[str]:
        """Purposes with no template code of their own (they use ``template_code``, if any),
        but for one sent on its fallback purpose's code (:func:`~outage_sentinel.sms_params.
        purpose_on`)."""
        from outage_sentinel.sms_params import PURPOSES, purpose_on

        return [p for p in PURPOSES if purpose_on(p, self.templates) not in self.templates]


class TencentSmsTemplate(Strict):
    #: The template's id in the Tencent SMS console (``TemplateId``).
    id: str = Field(coerce_numbers_to_str=True)
    #: The purpose's parameter names in the order of the template's ``{1}``, ``{2}``…
    params: list[str]


class TencentSmsChannelConfig(ChannelBase):
    """Tencent Cloud SMS (API 3.0 ``SendSms``); docs/channels.md."""

    type: Literal["tencent_sms"]
    base_url: str = Field(default="https://sms.tencentcloudapi.com", pattern=r"^https?://")
    #: Tencent region of the API (``X-TC-Region``).
    region: str = "ap-guangzhou"
    secret_id: SecretStr
    secret_key: SecretStr
    sms_sdk_app_id: str = Field(coerce_numbers_to_str=True)
    sign_name: str
    #: Template per purpose: ``{id, params}``; parameter names per purpose in docs/channels.md.
    templates: dict[str, TencentSmsTemplate] = Field(min_length=1)
    #: The console's per-number daily limit (Tencent's default: 10).
    per_number_per_day: int = Field(default=10, gt=0, le=100_000)

    @model_validator(mode="after")
    def _template_ids(self) -> TencentSmsChannelConfig:
        from outage_sentinel.sms_params import PURPOSES

        for purpose, template in self.templates.items():
            if purpose not in PURPOSES:
                raise ValueError(f"templates.{purpose}: unknown purpose (one of "
                                 f"{', '.join(PURPOSES)})")
            if not template.id.strip():
                raise ValueError(f"templates.{purpose}.id: must not be empty")
        return self


class EmailChannelConfig(ChannelBase):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    #: PEM file of the CA that signed the server's certificate (an intranet mail server with a
    #: private CA); the system's trusted CAs when unset.
    ca_file: Path | None = None


ChannelConfig = Annotated[
    FileChannelConfig
    | ConsoleChannelConfig
    | WebhookChannelConfig
    | RobotChannelConfig
    | SmsChannelConfig
    | TencentSmsChannelConfig
    | EmailChannelConfig,
    Field(discriminator="type"),
]


# -- the rest -----------------------------------------------------------------------------------


class DatabaseConfig(Strict):
    #: SQLAlchemy URL; default ``sqlite:///<state_dir>/sentinel.db``. Put passwords in ``${ENV}``.
    url: SecretStr | None = None


class MetricsConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, lt=65536)


class BoardConfig(Strict):
    """The command-centre board (``outage-sentinel board``; README "The board")."""

    #: Also serve the board inside ``outage-sentinel run`` (the embedded default does).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, lt=65536)
    #: Signed-in sessions last this long.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: Mark the session cookie Secure. Set it when the board is reached over TLS (a proxy in
    #: front); leave it off for plain http on 127.0.0.1, or the browser drops the cookie.
    secure_cookies: bool = False
    #: With no user in the database, create ``admin`` with a one-time password printed once on
    #: standard output (never logged); it must be changed at the first sign-in.
    first_admin: bool = False
    #: Optional intranet tile server for the map, e.g. ``http://tiles.local/{z}/{x}/{y}.png``.
    tile_url: str | None = None
    #: Failed sign-ins for one user name before each further attempt is slowed down.
    max_failed_sign_ins: int = Field(default=5, ge=1, le=100)


DEFAULT_SMS_KEYWORDS: dict[str, Literal["back", "dark"]] = {"1": "back", "2": "dark"}


class FieldConfig(Strict):
    """Links for the field (README "Field links")."""

    #: The board's address as a liaison's phone reaches it, e.g. ``https://board.example.cn``;
    #: None: notices carry no link.
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    #: The links' signing key (32 bytes or more, from the environment: ``${LINK_SECRET}``).
    #: Unset: one is generated once and kept in the database.
    link_secret: SecretStr | None = None
    #: The secret path part of the SMS reply webhooks (``/hooks/sms/<token>``, Aliyun's uplink
    #: push; ``/hooks/sms/<token>/tencent``, Tencent's reply callback); None: no webhook. From
    #: the environment: ``${SMS_REPLY_TOKEN}``.
    sms_reply_token: SecretStr | None = None
    #: The app secret of a DingTalk outgoing robot in the liaisons' groups (``/hooks/dingtalk``);
    #: None: no callback. From the environment: ``${DINGTALK_ROBOT_SECRET}``.
    dingtalk_app_secret: SecretStr | None = None
    #: Feishu event callbacks (``/hooks/feishu``): the app's verification token (None: no
    #: callback) and, optionally, its encrypt key to check the request signature.
    feishu_verification_token: SecretStr | None = None
    feishu_encrypt_key: SecretStr | None = None
    #: Feishu chat id -> the liaisons' ``target`` of that group in liaisons.csv.
    feishu_chats: dict[str, str] = Field(default_factory=dict)
    #: Reply keywords (SMS and robot groups) and what they mean (a liaison replies 1 or 2).
    sms_keywords: dict[str, Literal["back", "dark"]] = Field(
        default_factory=lambda: dict(DEFAULT_SMS_KEYWORDS))
    #: Crews' photos (re-encoded, under ``<state_dir>/photos``) are deleted after this long.
    photo_retention_days: float = Field(default=180.0, gt=0, le=3660)


#: A region's name: it goes into incident ids, so short and plain.
REGION_NAME = r"^[A-Za-z0-9_]{1,20}$"


class RegionConfig(Strict):
    """The part of the bundle this daemon group serves (README "Regions")."""

    #: One leader per region; incident ids carry it (``INC-<name>-20261204-0001``) unless it
    #: is ``default``, the whole bundle.
    name: str = Field(default="default", pattern=REGION_NAME)
    #: The substations (``substation`` column of the feeder heads) whose feeders it serves.
    substations: list[str] = Field(default_factory=list)
    #: Feeders (id or name) it serves besides. Both lists empty: every feeder of the bundle.
    feeders: list[str] = Field(default_factory=list)


class HaConfig(Strict):
    """Active/standby daemons on one PostgreSQL (README "Two nodes")."""

    #: Take part in leader election: only the region's leader polls, processes and sends.
    enabled: bool = False
    #: Before ``region`` existed, the lease's name (still read for the lease only: the
    #: daemon's data stays the whole bundle's; ``region.name`` wins, and the two must agree
    #: when both are set).
    region: str | None = Field(default=None, pattern=REGION_NAME)
    #: This node's name in the lease (default: host name and process id).
    node: str | None = Field(default=None, max_length=200)
    #: How long a lease lasts without renewal (renewed every third of it). A standby takes
    #: over within this time of the leader's death; keep it under two poll intervals.
    lease_seconds: float = Field(default=10.0, ge=1.0, le=3600.0)


class LogConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"
    file: Path | None = None


class CorrelationConfig(Strict):
    #: Events on the same feeder whose outage windows are this close are one incident.
    window_minutes: float = Field(default=30.0, ge=0, le=MAX_MINUTES)


class DeliveryConfig(Strict):
    interval_seconds: float = Field(default=2.0, gt=0, le=MAX_SECONDS)
    batch_size: int = Field(default=100, gt=0, le=100_000)
    retry: RetryConfig = RetryConfig()
    #: Render and log what would be sent; send nothing.
    dry_run: bool = False
    #: Worker threads per channel: how many of one channel's targets are sent to at once. Each
    #: (channel, target) is delivered on its own, so a hung target holds one thread of its own
    #: channel and nothing of any other channel.
    workers_per_channel: int = Field(default=4, ge=1, le=64)
    #: On SIGTERM, how long sends already under way may take to finish and be recorded; one
    #: still running then is left in flight and sent at most once more at the next start.
    shutdown_grace_seconds: float = Field(default=15.0, ge=0, le=MAX_SECONDS)


class NotifyConfig(Strict):
    language: Literal["zh", "en"] = "zh"
    #: Liaison roles that receive village notices.
    liaison_roles: list[Literal["village_liaison", "grid_manager", "transformer_manager"]] = [
        "village_liaison",
        "grid_manager",
        "transformer_manager",
    ]
    #: Directory of Jinja2 templates overriding the built-in ones (same file names).
    templates_dir: Path | None = None
    #: A village is sent an update when its expected restoration time moves at least this much
    #: from the one it was last told (or appears or disappears).
    etr_update_minutes: float = Field(default=15.0, ge=0, le=MAX_MINUTES)
    #: A village's update whose only news is that its expected restoration time is no longer
    #: known (the record that gave it ended or was withdrawn; nothing else changed for the
    #: village) waits this long: its 恢复送电, or any other news of it, within the hold
    #: supersedes it (a record's end is often the power coming back a poll later, and the
    #: meters' power-on is a restoration only ``ami_screen.restore_settle_seconds`` after it:
    #: the default covers that and a poll); else it goes at the end of the hold. 0: at once.
    void_etr_hold_seconds: float = Field(default=360.0, ge=0, le=MAX_SECONDS)
    #: A village still off this long after the expected restoration time it was last told
    #: (a fault's, the command centre's, planned work's stop) hears once that the time has
    #: passed and the new one is not known (原预计…恢复，已超时 / 超出计划时间仍停电), and the
    #: command centre is alerted (:mod:`outage_sentinel.overruns`). 0: never.
    overrun_grace_minutes: float = Field(default=15.0, ge=0, le=MAX_MINUTES)
    #: Per audience (liaison, crew, command), local hours in which only fault notices go out;
    #: the rest wait until the window ends, e.g. ``{liaison: "22:00-07:00"}``.
    quiet_hours: dict[Literal["liaison", "crew", "command"],
                      Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")]
                      ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _quiet_windows_end(self) -> NotifyConfig:
        same = [(f"quiet_hours.{audience}",
                 f"{text!r} starts and ends at one time: that window never ends (only fault "
                 "notices would ever go out); give a window such as '22:00-07:00', or leave "
                 "the audience out for none")
                for audience, text in self.quiet_hours.items()
                if text.split("-")[0] == text.split("-")[1]]
        if same:
            raise KeyProblems(same)
        return self

    def quiet_windows(self) -> dict[str, tuple[Any, Any]]:
        """``quiet_hours`` as ``(start, end)`` local times."""
        from datetime import time

        out: dict[str, tuple[Any, Any]] = {}
        for audience, text in self.quiet_hours.items():
            a, b = text.split("-")
            out[audience] = (time.fromisoformat(a), time.fromisoformat(b))
        return out


class LifecycleConfig(Strict):
    """Incident lifecycle (see README "Incident lifecycle")."""

    #: A new outage on the same transformer areas this soon after restoration is a reopening,
    #: linked to the original incident.
    reopen_window_minutes: float = Field(default=120.0, ge=0, le=MAX_MINUTES)
    #: Dispatch a crew automatically when a fault incident is confirmed.
    auto_dispatch: bool = True
    #: How often deadlines, reminders and escalations are checked.
    check_interval_seconds: float = Field(default=30.0, gt=0, le=MAX_SECONDS)


class PlannedConfig(Strict):
    """Planned and temporary outage notices."""

    #: Reminders before the start, in hours (default: the day before and one hour before).
    reminder_hours: list[Annotated[float, Field(ge=0, le=MAX_HOURS)]] = Field(
        default_factory=lambda: [24.0, 1.0])


class CommandCentreConfig(Strict):
    """Where command-centre summaries, escalations and dead letters go."""

    channel: str | None = None
    target: str = "command-centre"
    #: Send a summary for every new incident revision (else only escalations/dead letters).
    summaries: bool = True
    #: At most one summary of an incident per this many seconds: one queued sooner after the
    #: last that went waits (pending) for the interval to pass, and one not sent yet is
    #: replaced (``superseded``) by a newer one of the same incident, so a storm's revisions
    #: reach the group as one summary of the latest state per interval, not one per area.
    #: An incident's first summary and one whose status or kind changed (restored,
    #: cancelled, reopened) never wait. 0: every revision's summary goes at once.
    summary_min_interval_seconds: float = Field(default=60.0, ge=0, le=MAX_SECONDS)
    #: Send the daily report at this local time (HH:MM), or never.
    daily_report_at: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class PriorityConfig(Strict):
    """Repair-priority weights (see :mod:`outage_sentinel.priority` for the formula)."""

    #: Per important user of each grade.
    special: float = Field(default=1000.0, ge=0, le=MAX_WEIGHT)
    first: float = Field(default=400.0, ge=0, le=MAX_WEIGHT)
    second: float = Field(default=150.0, ge=0, le=MAX_WEIGHT)
    #: Per household with the tag.
    life_support: float = Field(default=600.0, ge=0, le=MAX_WEIGHT)
    elderly_alone: float = Field(default=120.0, ge=0, le=MAX_WEIGHT)
    #: Weights of further ``customers.csv`` tags, e.g. ``{cold_storage: 30}``.
    extra_tags: dict[str, Annotated[float, Field(le=MAX_WEIGHT)]] = Field(default_factory=dict)
    #: Multiplier of log10(1 + customers off).
    per_customer_log: float = Field(default=40.0, ge=0, le=MAX_WEIGHT)
    #: Per hour elapsed since the outage began, up to ``elapsed_cap_hours``.
    per_hour: float = Field(default=20.0, ge=0, le=MAX_WEIGHT)
    elapsed_cap_hours: float = Field(default=24.0, ge=0, le=MAX_HOURS)
    #: Names listed per category in the priority reasons.
    max_named: int = Field(default=5, ge=0, le=1000)

    @field_validator("extra_tags")
    @classmethod
    def _extra_tags_as_the_bundle_reads_them(cls, tags: dict[str, float]) -> dict[str, float]:
        """Keys as ``customers.csv`` tags are read (``Cold-Storage`` is ``cold_storage``)."""
        if not tags:
            return tags
        from outage_sentinel.topology.model import normalise_tag  # lazy, as to_weights()

        out: dict[str, float] = {}
        written: dict[str, str] = {}
        for tag, weight in tags.items():
            key = normalise_tag(tag)
            if key in out:
                raise KeyProblems([("", f"{written[key]!r} and {tag!r} are both {key!r} as "
                                        "customers.csv tags are read (case and - ignored)")])
            out[key], written[key] = weight, tag
        return out

    @model_validator(mode="after")
    def _extra_tags_non_negative(self) -> PriorityConfig:
        bad = sorted(t for t, w in self.extra_tags.items() if w < 0 or not t)
        if bad:
            raise KeyProblems([("extra_tags", f"each needs a name and a weight >= 0: "
                                              f"{', '.join(bad)}")])
        return self

    def to_weights(self) -> PriorityWeights:
        """The immutable :class:`outage_sentinel.priority.PriorityWeights`."""
        from outage_sentinel.priority import PriorityWeights  # lazy: config stays import-light

        return PriorityWeights(
            special=self.special, first=self.first, second=self.second,
            life_support=self.life_support, elderly_alone=self.elderly_alone,
            extra_tags=tuple(sorted(self.extra_tags.items())),
            per_customer_log=self.per_customer_log, per_hour=self.per_hour,
            elapsed_cap_hours=self.elapsed_cap_hours, max_named=self.max_named)


class ArrivalMinutes(Strict):
    """Crew arrival commitments by village area type (SGCC 45/90/120; GB/T 28583 60/120/240)."""

    urban: float = Field(default=45.0, gt=0, le=MAX_MINUTES)
    rural: float = Field(default=90.0, gt=0, le=MAX_MINUTES)
    remote: float = Field(default=120.0, gt=0, le=MAX_MINUTES)


class TravelSpeeds(Strict):
    """Assumed average road speed (km/h) from a crew base, by area type of the site."""

    urban: float = Field(default=25.0, ge=1, le=MAX_SPEED)
    rural: float = Field(default=30.0, ge=1, le=MAX_SPEED)
    remote: float = Field(default=20.0, ge=1, le=MAX_SPEED)


class DispatchConfig(Strict):
    """Crew dispatch (see :mod:`outage_sentinel.crew` and docs/dispatch.md)."""

    arrival_minutes: ArrivalMinutes = ArrivalMinutes()
    #: Area type assumed when no affected village is known.
    default_area_type: Literal["urban", "rural", "remote"] = "rural"
    #: Escalate when the crew would arrive less than this long before the deadline.
    at_risk_margin_minutes: float = Field(default=15.0, ge=0, le=MAX_MINUTES)
    speed_kmh: TravelSpeeds = TravelSpeeds()
    #: Road distance / straight-line distance.
    road_factor: float = Field(default=1.4, ge=1, le=10)
    #: ``{lat}``, ``{lon}`` and ``{label}`` (URL-encoded) are substituted.
    map_url_template: str = "https://uri.amap.com/marker?position={lon},{lat}&name={label}"
    #: Longest household and patrol lists in one message.
    max_households: int = Field(default=8, ge=0, le=1000)
    max_patrol_nodes: int = Field(default=8, ge=0, le=1000)

    @model_validator(mode="after")
    def _map_template_formats(self) -> DispatchConfig:
        wrong = map_template_problem(self.map_url_template)
        if wrong is None and not self.map_url_template.startswith(("https://", "http://")):
            wrong = "must start with http:// or https://"
        if wrong is not None:
            raise KeyProblems([("map_url_template", wrong)])
        return self

    def to_params(self) -> DispatchParams:
        """The immutable :class:`outage_sentinel.crew.DispatchParams`."""
        from outage_sentinel.crew import Commitments, DispatchParams  # lazy, as above

        return DispatchParams(
            commitments=Commitments(
                urban=self.arrival_minutes.urban, rural=self.arrival_minutes.rural,
                remote=self.arrival_minutes.remote, default_area_type=self.default_area_type),
            at_risk_margin_minutes=self.at_risk_margin_minutes,
            urban_speed_kmh=self.speed_kmh.urban, rural_speed_kmh=self.speed_kmh.rural,
            remote_speed_kmh=self.speed_kmh.remote, road_factor=self.road_factor,
            map_url_template=self.map_url_template, max_households=self.max_households,
            max_patrol_nodes=self.max_patrol_nodes)


#: The fields ``dispatch.map_url_template`` may use.
MAP_FIELDS = ("lat", "lon", "label")


def map_template_problem(template: str) -> str | None:
    """What is wrong with a map URL template, or None: only ``{lat}``, ``{lon}`` and
    ``{label}``, plain (no ``{lon.x}``, ``{lat[0]}``, ``{lat!r}``, ``{lat:>9}``: the first two
    would crash formatting it, the others garble the URL)."""
    allowed = "may only use {lat}, {lon} and {label} (write {{ and }} for literal braces)"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{allowed}: {exc}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in MAP_FIELDS or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            return f"{allowed}, not {{{shown}}}"
    return None


Probability = Annotated[float, Field(gt=0, lt=1)]
UnitInterval = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: Localiser rates and shape factors; the bound keeps its arithmetic finite.
Positive = Annotated[float, Field(gt=0, le=1e6)]


class LocalisationConfig(Strict):
    """Evidence reliabilities and priors of the localiser (docs/localisation.md).

    Every key left out keeps the localiser's own default
    (:class:`outage_sentinel.localise.LocaliserParams`), so there is one place for them.
    """

    dead_detect_a: Positive | None = None
    dead_detect_b: Positive | None = None
    false_dead_per_feeder: Positive | None = None
    false_dead_max_rate: Probability | None = None
    alive_report_a: Positive | None = None
    alive_report_b: Positive | None = None
    alive_false_rate: Probability | None = None
    call_rate_shape: Positive | None = None
    call_rate_rate: Positive | None = None
    spurious_call_rate: Probability | None = None
    lv_fault_rate: Annotated[float, Field(ge=0, lt=1)] | None = None
    quiet_call_weight: Probability | None = None
    quiet_call_rate: Probability | None = None
    open_report_true: Probability | None = None
    open_report_false: Probability | None = None
    fault_prior: Probability | None = None
    fault_rate_shape: Positive | None = None
    storm_fault_prior: Probability | None = None
    storm_rate_shape: Positive | None = None
    storm_weight: Probability | None = None
    source_prior_factor: Positive | None = None
    switch_prior_factor: Positive | None = None
    #: An area's own fault (its transformer, drop-out fuse) relative to a protective device;
    #: 0 = the localiser never says "this area alone".
    transformer_prior_factor: Annotated[float, Field(ge=0, le=1e3)] | None = None
    #: The share of the areas beside a dead region that carry its evidence (wrong
    #: customer-transformer links in the GIS); 0 = none (fitted by ``localisation fit``).
    misfiled_rate: Annotated[float, Field(ge=0, le=0.5)] | None = None
    max_devices: Annotated[int, Field(ge=1, le=50)] | None = None
    max_hypotheses: Annotated[int, Field(ge=1, le=50)] | None = None
    false_dead_per_area: Probability | None = None
    false_dead_shape: Annotated[float, Field(ge=0, le=1e6)] | None = None
    #: Areas with a false dead rate of their own (flaky terminals, fitted): area id -> rate.
    false_dead_areas: dict[str, Probability] | None = None
    #: Relative fault rate per device kind (fitted by ``localisation fit``).
    kind_factors: dict[Literal["source", "breaker", "recloser", "sectionalizer", "fuse",
                               "switch", "transformer"], Positive] | None = None
    #: Kinds of device whose opening telemetry reports (a case with telemetry and no open
    #: report weighs against them).
    telemetered_kinds: list[Literal["source", "breaker", "recloser", "sectionalizer", "fuse",
                                    "switch"]] | None = None
    #: Knots (stated probability, observed frequency) of a calibration map, non-decreasing.
    calibration: list[tuple[UnitInterval, UnitInterval]] | None = None
    #: Calibration maps of their own per window and answer size (fitted from close-outs that
    #: carry their weather): key -> knots, as ``calibration``.
    calibration_maps: dict[Literal["calm", "storm", "calm/one", "calm/several", "storm/one",
                                   "storm/several"],
                           list[tuple[UnitInterval, UnitInterval]]] | None = None
    #: How many devices operate together on a feeder, per window (fitted from close-outs):
    #: window -> log factors of one, two, three and four-or-more devices against the rate's
    #: Beta (docs/localisation.md, "How many devices").
    count_tilts: dict[Literal["calm", "storm"],
                      Annotated[list[Annotated[float, Field(ge=-20, le=20, allow_inf_nan=False)]],
                                Field(min_length=1, max_length=4)]] | None = None
    #: A parameters file written by ``outage-sentinel localisation fit`` (the same keys as
    #: this section). Keys given in this section win over the file's.
    params_file: Path | None = None
    #: Refit the reliabilities and calibration daily at this local time (HH:MM) from the
    #: close-outs with a confirmed device in the database (at least 20), or never (null).
    refit_at: str | None = Field(default="03:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    #: Tell the localiser how many protective devices the county's other open fault incidents
    #: hold (a storm shows itself): a second device on a feeder then costs less.
    county_context: bool = True
    #: An area the localiser infers is off (no source named it) joins the incident, and its
    #: village hears it may be affected, when it is off with at least this probability
    #: (summed over the hypotheses that have it off).
    area_min_probability: UnitInterval = 0.5

    def to_params(self) -> LocaliserParams:
        """The immutable :class:`outage_sentinel.localise.LocaliserParams`."""
        from outage_sentinel.localise import LocaliserParams  # lazy: config stays import-light

        given = {k: v for k, v in self.model_dump(
            exclude={"county_context", "params_file", "refit_at",
                     "area_min_probability"}).items() if v is not None}
        if "false_dead_areas" in given:
            given["false_dead_areas"] = tuple(sorted(given["false_dead_areas"].items()))
        if "kind_factors" in given:
            given["kind_factors"] = tuple(sorted(given["kind_factors"].items()))
        if "telemetered_kinds" in given:
            given["telemetered_kinds"] = tuple(given["telemetered_kinds"])
        if "calibration" in given:
            given["calibration"] = tuple(tuple(k) for k in given["calibration"])
        if "calibration_maps" in given:
            given["calibration_maps"] = tuple(sorted(
                (key, tuple(tuple(k) for k in knots))
                for key, knots in given["calibration_maps"].items()))
        if "count_tilts" in given:
            given["count_tilts"] = tuple(sorted(
                (window, tuple(tilts)) for window, tilts in given["count_tilts"].items()))
        return LocaliserParams(**given)

    @model_validator(mode="after")
    def _monotone_calibration(self) -> LocalisationConfig:
        maps = {"calibration": self.calibration or []}
        maps.update({f"calibration_maps.{k}": v for k, v in (self.calibration_maps or {}).items()})
        for where, knots in maps.items():
            if any(b[0] < a[0] or b[1] < a[1] for a, b in zip(knots, knots[1:], strict=False)):
                raise ValueError(f"{where}: knots must be non-decreasing in both values")
        return self


class Config(Strict):
    """The whole configuration file."""

    #: Key paths of the secrets written in the file itself, not taken from the environment
    #: (:meth:`literal_secrets`).
    _literal: tuple[str, ...] = PrivateAttr(default=())

    state_dir: Path = Path("state")
    timezone: str = "Asia/Shanghai"
    topology: Path = Path("topology")
    database: DatabaseConfig = DatabaseConfig()
    metrics: MetricsConfig = MetricsConfig()
    board: BoardConfig = BoardConfig()
    ha: HaConfig = HaConfig()
    region: RegionConfig = RegionConfig()
    field: FieldConfig = FieldConfig()
    log: LogConfig = LogConfig()
    sources: list[SourceConfig] = Field(min_length=1)
    channels: dict[str, ChannelConfig] = Field(min_length=1)
    correlation: CorrelationConfig = CorrelationConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    notify: NotifyConfig = NotifyConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    ami_screen: AmiScreenConfig = AmiScreenConfig()
    planned: PlannedConfig = PlannedConfig()
    command_centre: CommandCentreConfig = CommandCentreConfig()
    priority: PriorityConfig = PriorityConfig()
    dispatch: DispatchConfig = DispatchConfig()
    localisation: LocalisationConfig = LocalisationConfig()

    @model_validator(mode="after")
    def _cross_field(self) -> Config:
        """Rules between keys, each problem at its key (all of them at once)."""
        found = self._cross_field_problems() + self._port_problems()
        if found:
            raise KeyProblems(found)
        return self

    def _cross_field_problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            found.append(("sources", f"source names must be unique; repeated: {', '.join(dupes)}"))
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            found.append(("timezone", f"{self.timezone!r} is not a known IANA zone"))
        if self.ha.enabled and not self.database_url().startswith("postgresql"):
            found.append(("", "ha.enabled needs a PostgreSQL database.url (SQLite is one node: "
                              "two daemons on one file would both act)"))
        cc = self.command_centre.channel
        if cc is not None and cc not in self.channels:
            found.append(("command_centre.channel", f"{cc!r} is not a key of 'channels'"))
        old = self.ha.region
        if old is not None and self.region.name not in ("default", old):
            found.append(("", f"ha.region {old!r} and region.name {self.region.name!r} differ "
                              "(ha.region is the old name of region.name: keep one)"))
        return found

    def _port_problems(self) -> list[tuple[str, str]]:
        """``metrics.port`` and ``board.port`` on one address: the second listener of ``run``
        (or of ``board`` beside it) would fail at start."""
        m, b = self.metrics, self.board
        wildcard = ("0.0.0.0", "::", "")
        if not (m.enabled and m.port and m.port == b.port):
            return []
        if m.host != b.host and m.host not in wildcard and b.host not in wildcard:
            return []
        return [("metrics.port", f"{m.port} is board.port too: the metrics endpoint and the "
                                 "board cannot listen on one port; give one of them another")]

    @property
    def lease_region(self) -> str:
        """The region whose lease this daemon bids for (``region.name``, else the older
        ``ha.region``)."""
        if self.region.name == "default" and self.ha.region is not None:
            return self.ha.region
        return self.region.name

    def literal_secrets(self) -> tuple[str, ...]:
        """Key paths of the secrets (credentials, keys, a database password) written in the
        config file itself rather than as ``${VAR}`` from the environment."""
        return self._literal

    def failover_note(self) -> str | None:
        """Why a standby may take longer than two poll intervals of a source to take over (the
        bound the design sets), or None: it bids every third of ``ha.lease_seconds``, so a
        takeover can take the lease and a third of it again."""
        polled = [s for s in self.sources if s.enabled]
        if not self.ha.enabled or not polled:
            return None
        quickest = min(polled, key=lambda s: s.interval_seconds)
        worst = self.ha.lease_seconds * 4 / 3
        if worst <= 2 * quickest.interval_seconds:
            return None
        return (f"ha.lease_seconds {self.ha.lease_seconds:g}: a standby may take {worst:.3g} s "
                "to take over (the lease, then its next bid), more than two poll intervals of "
                f"source {quickest.name!r} ({quickest.interval_seconds:g} s); shorten the "
                "lease or lengthen that interval")

    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.state_dir / 'sentinel.db'}"


RobotChannelConfig.model_rebuild()

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str],
                 used: set[str]) -> Any:
    """``value`` with ``${VAR}`` replaced; every value taken from ``env`` is added to ``used``
    and registered as a secret (whatever key it lands in: a URL, a header, a path).

    Iterative, not recursive: a deeply nested document must not exhaust the stack.
    """
    def replace(match: re.Match[str], where: str) -> str:
        name, default = match.group(1), match.group(2)
        if (value := env.get(name)) is not None and (value or default is None):  # "": default
            used.add(value)
            register_secret(value)
            return value
        if default is not None:
            return default
        problems.append(f"{where or '<root>'}: environment variable {name} is not set")
        return ""

    def one(v: Any, where: str) -> Any:
        if isinstance(v, str):
            return _ENV.sub(lambda m: replace(m, where), v) if "${" in v else v
        if isinstance(v, dict):
            return {}
        if isinstance(v, list):
            return []
        return v

    root = one(value, path)
    stack: list[tuple[Any, Any, str]] = [(value, root, path)]
    while stack:
        src, dst, where = stack.pop()
        if isinstance(src, dict):
            for k, v in src.items():
                sub = f"{where}.{k}" if where else str(k)
                dst[k] = one(v, sub)
                if isinstance(v, dict | list):
                    stack.append((v, dst[k], sub))
        elif isinstance(src, list):
            for i, v in enumerate(src):
                sub = f"{where}[{i}]"
                dst.append(one(v, sub))
                if isinstance(v, dict | list):
                    stack.append((v, dst[-1], sub))
    return root


def _hide(text: str, used: set[str]) -> str:
    """``text`` without any value that came from the environment: registered ones (4+
    characters) masked, shorter ones masked where quoted (``'abc'``, as pydantic echoes)."""
    text = redact_secrets(text)
    for v in sorted(used, key=len, reverse=True):
        if v:
            for quoted in (repr(v), f"'{v}'", f'"{v}"'):
                text = text.replace(quoted, "'***'")
    return text


_TAGS = frozenset({"http_json", "replay", "mqtt", "file_drop", "file", "console", "webhook",
                   "wecom", "dingtalk", "feishu", "sms", "tencent_sms", "email"})


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "function-after" or (
                i == 2 and loc[0] in ("sources", "channels") and part in _TAGS):
            # The discriminator tag pydantic inserts right after a source's index or a
            # channel's name; not part of the user's key path. Only there: a channel *named*
            # like its type (``sms: {type: sms}``, as config.yaml does) keeps its name.
            continue
        else:
            key = str(part)
            if len(key) > MAX_KEY_CHARS:  # a key pasted from a broken file: name it, shortly
                key = f"{key[:MAX_KEY_CHARS]}…"
            out += f".{key}" if out else key
    return out or "<root>"


def _below(loc: tuple[Any, ...], key: str) -> str:
    """The place of a :class:`KeyProblems` entry, then ``": "``: ``key`` below the model or
    field at ``loc``; without a key, ``loc`` itself (nothing at the root: the message names
    its keys)."""
    if not key:
        return f"{_loc(loc)}: " if loc else ""
    return f"{_loc(loc)}.{key}: " if loc else f"{key}: "


def parse_config(data: Any, path: str = "<config>", env: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(data, dict):
        raise ConfigError(path, ["<root>: expected a mapping of keys"])
    problems: list[str] = []
    used: set[str] = set()
    data = _interpolate(data, "", os.environ if env is None else env, problems, used)
    if problems:
        raise ConfigError(path, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            keyed = err.get("ctx", {}).get("error")
            if isinstance(keyed, KeyProblems):
                problems += [_hide(f"{_below(tuple(err['loc']), key)}{msg}", used)
                             for key, msg in keyed.problems]
                continue
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            # Messages may quote the input (a discriminator tag, a timezone): never one that
            # came from the environment.
            problems.append(_hide(f"{_loc(tuple(err['loc']))}: {msg}", used))
        raise ConfigError(path, problems) from None
    except RecursionError:
        raise ConfigError(path, ["<root>: nested too deeply"]) from None
    config._literal = literal_secret_paths(config, used)
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    if config.localisation.params_file is not None:
        config = _with_params_file(config, config.localisation.params_file)
    return config


def literal_secret_paths(config: Config, from_env: set[str]) -> tuple[str, ...]:
    """The key paths of ``config``'s secrets whose value is not one the environment gave
    (``from_env``): a ``SecretStr`` field, and the password of ``database.url``."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", config)]
    while stack:
        where, value = stack.pop()
        if where == "database.url":  # a URL: only its password is a secret
            continue
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if secret and secret not in from_env:
                found.append(where)
        elif isinstance(value, BaseModel):
            stack += [(f"{where}.{k}".lstrip("."), getattr(value, k))
                      for k in type(value).model_fields]
        elif isinstance(value, dict):
            stack += [(f"{where}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    url = config.database.url.get_secret_value() if config.database.url else ""
    if (password := url_password(url)) and password not in from_env:
        found.append("database.url")
    return tuple(sorted(found))


def url_password(url: str) -> str:
    """The password in a URL's ``user:password@`` part, or ""."""
    auth = url.split("//", 1)[-1].split("@", 1)
    if len(auth) < 2 or ":" not in auth[0]:
        return ""
    return auth[0].split(":", 1)[1]


def _with_params_file(config: Config, path: Path) -> Config:
    """``config`` with the fitted parameters of ``path`` under its own ``localisation`` keys."""
    fitted = load_localisation(path)
    own = config.localisation.model_dump(exclude_unset=True)
    merged = {**fitted.model_dump(exclude_unset=True), **own}
    return config.model_copy(update={"localisation": LocalisationConfig.model_validate(merged)})


def load_localisation(path: str | Path) -> LocalisationConfig:
    """A parameters file (``localisation fit --out``): the keys of the ``localisation``
    section. Every problem is a :class:`ConfigError` naming the file and the key."""
    p = Path(path)
    data = _read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(str(p), ["<root>: expected a mapping of localisation keys"])
    data.pop("params_file", None)
    try:
        return LocalisationConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False, include_input=False):
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{_loc(tuple(e['loc']))}: {msg}")
        raise ConfigError(str(p), problems) from None


def _resolve_paths(config: Config, base: Path) -> Config:
    def fix(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        return (base / p).resolve()

    sources = []
    for s in config.sources:
        updates: dict[str, Any] = {}
        for attr in ("scenario", "directory", "ca_file", "cert_file", "key_file", "done_dir",
                     "failed_dir"):
            if hasattr(s, attr) and getattr(s, attr) is not None:
                updates[attr] = fix(getattr(s, attr))
        sources.append(s.model_copy(update=updates))
    channels: dict[str, Any] = {}
    for name, c in config.channels.items():
        if isinstance(c, FileChannelConfig):
            c = c.model_copy(update={"path": fix(c.path)})
        elif isinstance(c, EmailChannelConfig) and c.ca_file is not None:
            c = c.model_copy(update={"ca_file": fix(c.ca_file)})
        channels[name] = c
    localisation = config.localisation
    if localisation.params_file is not None:
        localisation = localisation.model_copy(
            update={"params_file": fix(localisation.params_file)})
    notify = config.notify
    if notify.templates_dir is not None:
        notify = notify.model_copy(update={"templates_dir": fix(notify.templates_dir)})
    log = config.log
    if log.file is not None:
        log = log.model_copy(update={"file": fix(log.file)})
    return config.model_copy(update={
        "state_dir": fix(config.state_dir),
        "topology": fix(config.topology),
        "sources": sources,
        "channels": channels,
        "notify": notify,
        "log": log,
        "localisation": localisation,
    })


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A SafeLoader that refuses documents whose aliases loop or expand beyond
    :data:`MAX_YAML_VALUES` values (``a: &a [*a]``; the "billion laughs"), and mappings that
    give a key twice (plain YAML keeps the last silently: a second ``sources:`` would drop
    the first list)."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_expansion(node)
        _check_duplicate_keys(node)
        return node


def _check_duplicate_keys(root: yaml.Node) -> None:
    """Raise on a mapping that gives the same key twice, naming the key and both lines.
    (Keys merged in with ``<<`` may be overridden: they are not the mapping's own.)"""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _check_mapping_keys(node)
        stack.extend(_children(node))


def _check_mapping_keys(node: yaml.MappingNode) -> None:
    first: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        earlier = first.setdefault((key.tag, key.value), key)
        if earlier is not key:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key.value!r} (first given on line "
                        f"{earlier.start_mark.line + 1}; a key may be given only once)",
                problem_mark=key.start_mark)


def _check_expansion(root: yaml.Node) -> None:
    """Count the values ``root`` expands to, following aliases (shared nodes) each time they
    are used; raise on a loop or too many. Iterative, memoised per node."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_YAML_VALUES:
                raise yaml.MarkedYAMLError(
                    problem=f"aliases expand this document to more than {MAX_YAML_VALUES:,} "
                            "values; write the values out", problem_mark=node.start_mark)
            continue
        if key in size:
            continue
        if key in open_:
            raise yaml.MarkedYAMLError(problem="an alias refers to the value that contains it "
                                               "(a recursive alias)",
                                       problem_mark=node.start_mark)
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _decode(p: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(str(p), [
            f"line {line}, column {column}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"]) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a YAML config file.

    Every failure is a :class:`ConfigError` naming the file and the line or key: unreadable
    file, bytes that are not UTF-8, invalid YAML, aliases that loop or explode, nesting too deep.
    """
    p = Path(path)
    return parse_config(_read_yaml(p), str(p), env, base_dir=p.resolve().parent)


def _read_yaml(p: Path) -> Any:
    """A YAML file read through the bounded loader; :class:`ConfigError` naming the file and
    the line for anything unreadable."""
    try:
        text = _decode(p, p.read_bytes())
    except OSError as exc:
        raise ConfigError(str(p), [f"<file>: cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ConfigError(str(p), [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    except RecursionError:
        raise ConfigError(str(p), ["<file>: not valid YAML: nested too deeply"]) from None
    except (ValueError, OverflowError) as exc:  # a date like 2026-02-30, a 5000-digit number
        raise ConfigError(str(p), [f"<file>: not valid YAML: {exc}"]) from None
