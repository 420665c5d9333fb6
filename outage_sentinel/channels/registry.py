"""Build channel objects from the ``channels:`` section of the config.

Config validation (pydantic) already checked types and required keys; this adds the checks
that need to know what a channel does (a robot channel with no robots, an empty key, a base URL
that isn't HTTP) and raises :class:`ChannelError` naming the config key. Disabled channels are
left out: the delivery loop dead-letters messages for a channel it doesn't have, with the
channel's name in the reason, which is what an operator who disabled it wants to see.

Also home of the per-channel rate-limit defaults (DESIGN §4) and the two helpers the delivery
loop uses to ask any channel — including test doubles that don't define them — what to count.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from outage_sentinel.channels.base import Channel, ChannelError, Message, RateLimited
from outage_sentinel.config import (
    ConsoleChannelConfig,
    EmailChannelConfig,
    FileChannelConfig,
    RobotChannelConfig,
    SmsChannelConfig,
    TencentSmsChannelConfig,
    WebhookChannelConfig,
)
from outage_sentinel.ratelimit import DAY, DEFAULT_LIMITS, MINUTE, SECOND, RateLimit

ChannelConfigT = (FileChannelConfig | ConsoleChannelConfig | WebhookChannelConfig
                  | RobotChannelConfig | SmsChannelConfig | TencentSmsChannelConfig
                  | EmailChannelConfig)


def default_rate_limits(config: ChannelConfigT) -> tuple[RateLimit, ...]:
    """The limits for one channel: documented defaults, overridden by the config's numbers."""
    if isinstance(config, RobotChannelConfig):
        defaults = DEFAULT_LIMITS[config.type]
        per_minute = next((lim for lim in defaults if lim.window_seconds == MINUTE), None)
        per_second = next((lim for lim in defaults if lim.window_seconds == SECOND), None)
        if config.per_minute is not None:
            per_minute = RateLimit(config.per_minute, MINUTE)
        if config.per_second is not None:
            per_second = RateLimit(config.per_second, SECOND)
        return tuple(lim for lim in (per_minute, per_second) if lim is not None)
    if isinstance(config, SmsChannelConfig | TencentSmsChannelConfig):
        return (RateLimit(config.per_number_per_day, DAY),)
    return ()


def rate_limits_of(channel: Any) -> tuple[RateLimit, ...]:
    """The channel's limits; none for channels (and test fakes) that don't declare any."""
    return tuple(channel.rate_limits or ()) if isinstance(channel, RateLimited) else ()


def rate_keys_of(channel: Any, message: Message) -> tuple[str, ...]:
    """Limiter keys for ``message``, prefixed by the channel name so channels never collide.

    Robots count per robot (a hash of its key: targets sharing a robot share its budget);
    Aliyun SMS per number and template (one key per number), Tencent SMS per number.
    """
    keys = tuple(channel.rate_keys(message)) if isinstance(channel, RateLimited) \
        else (message.target,)
    return tuple(f"{channel.name}/{k}" for k in keys)


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")


def _check_url(name: str, field: str, url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ChannelError(f"channels.{name}.{field}: expected an http(s):// URL")
    return url


def _robots(name: str, config: RobotChannelConfig) -> dict[str, tuple[str, str | None]]:
    if not config.robots:
        raise ChannelError(f"channels.{name}.robots: at least one robot (target group with "
                           f"its key) is required")
    out: dict[str, tuple[str, str | None]] = {}
    for group, creds in config.robots.items():
        key = _secret(creds.key).strip()
        if not key:
            raise ChannelError(f"channels.{name}.robots.{group}.key: must not be empty "
                               f"(is the environment variable set?)")
        secret = _secret(creds.secret).strip() if creds.secret is not None else None
        if creds.secret is not None and not secret:
            raise ChannelError(f"channels.{name}.robots.{group}.secret: must not be empty; "
                               f"leave it out for an unsigned robot")
        if config.type == "wecom" and secret:
            raise ChannelError(f"channels.{name}.robots.{group}.secret: WeCom robots are not "
                               f"signed; remove the secret")
        out[group] = (key, secret or None)
    return out


def build_channel(name: str, config: ChannelConfigT, *,
                  clock: Callable[[], float] = time.time) -> Channel:
    """One channel from its config; raises :class:`ChannelError` naming the key."""
    from outage_sentinel.channels import console, file, webhook

    limits = default_rate_limits(config)
    if isinstance(config, FileChannelConfig):
        return file.FileChannel(name, path=config.path, clock=clock)
    if isinstance(config, ConsoleChannelConfig):
        return console.ConsoleChannel(name, stream=config.stream)
    if isinstance(config, WebhookChannelConfig):
        return webhook.WebhookChannel(
            name, url=_check_url(name, "url", config.url),
            headers={k: _secret(v) for k, v in config.headers.items()},
            success_field=config.success_field, timeout=config.timeout_seconds,
            rate_limits=limits)
    if isinstance(config, RobotChannelConfig):
        return _robot_channel(name, config, limits, clock)
    if isinstance(config, SmsChannelConfig):
        return _sms_channel(name, config, limits, clock)
    if isinstance(config, TencentSmsChannelConfig):
        return _tencent_sms_channel(name, config, limits, clock)
    if isinstance(config, EmailChannelConfig):
        return _email_channel(name, config)
    raise ChannelError(f"channels.{name}.type: unknown channel type "
                       f"{getattr(config, 'type', None)!r}")


def _robot_channel(name: str, config: RobotChannelConfig, limits: tuple[RateLimit, ...],
                   clock: Callable[[], float]) -> Channel:
    """A WeCom, DingTalk or Feishu group robot."""
    from outage_sentinel.channels import dingtalk, feishu, wecom

    robots = _robots(name, config)
    timeout = config.timeout_seconds
    if config.type == "wecom":
        base = _check_url(name, "base_url", config.base_url or wecom.DEFAULT_BASE_URL)
        return wecom.WeComChannel(name, robots={g: k for g, (k, _) in robots.items()},
                                  base_url=base, timeout=timeout, rate_limits=limits)
    if config.type == "dingtalk":
        base = _check_url(name, "base_url", config.base_url or dingtalk.DEFAULT_BASE_URL)
        return dingtalk.DingTalkChannel(name, robots=robots, base_url=base,
                                        timeout=timeout, rate_limits=limits, clock=clock)
    base = _check_url(name, "base_url", config.base_url or feishu.DEFAULT_BASE_URL)
    return feishu.FeishuChannel(name, robots=robots, base_url=base, timeout=timeout,
                                rate_limits=limits, clock=clock)


def _sms_channel(name: str, config: SmsChannelConfig, limits: tuple[RateLimit, ...],
                 clock: Callable[[], float]) -> Channel:
    """Aliyun SMS, its credentials and sign name checked."""
    from outage_sentinel.channels import sms

    key_id = _secret(config.access_key_id).strip()
    key_secret = _secret(config.access_key_secret).strip()
    for key, value in (("access_key_id", key_id), ("access_key_secret", key_secret),
                       ("sign_name", config.sign_name.strip())):
        if not value:
            raise ChannelError(f"channels.{name}.{key}: must not be empty")
    if config.template_code is not None and not config.template_code.strip():
        raise ChannelError(f"channels.{name}.template_code: must not be empty")
    return sms.SmsChannel(
        name, access_key_id=key_id, access_key_secret=key_secret,
        sign_name=config.sign_name, template_code=config.template_code,
        templates=config.templates, endpoint=_check_url(name, "endpoint", config.endpoint),
        region_id=config.region_id, timeout=config.timeout_seconds, rate_limits=limits,
        clock=clock)


def _tencent_sms_channel(name: str, config: TencentSmsChannelConfig,
                        limits: tuple[RateLimit, ...], clock: Callable[[], float]) -> Channel:
    """Tencent Cloud SMS: credentials, app, sign name and each template's parameter names
    checked (a name the purpose does not have would fail every such SMS at outage time)."""
    from outage_sentinel.channels import tencent_sms

    secret_id = _secret(config.secret_id).strip()
    secret_key = _secret(config.secret_key).strip()
    for key, value in (("secret_id", secret_id), ("secret_key", secret_key),
                       ("sms_sdk_app_id", config.sms_sdk_app_id.strip()),
                       ("sign_name", config.sign_name.strip()), ("region", config.region.strip())):
        if not value:
            raise ChannelError(f"channels.{name}.{key}: must not be empty")
    templates = {}
    for purpose, template in config.templates.items():
        problem = tencent_sms.variable_problem(purpose, template.params)
        if problem is not None:
            raise ChannelError(f"channels.{name}.templates.{purpose}.{problem}")
        templates[purpose] = tencent_sms.Template(template.id.strip(), tuple(template.params))
    return tencent_sms.TencentSmsChannel(
        name, secret_id=secret_id, secret_key=secret_key,
        sms_sdk_app_id=config.sms_sdk_app_id.strip(), sign_name=config.sign_name,
        templates=templates, base_url=_check_url(name, "base_url", config.base_url),
        region=config.region.strip(), timeout=config.timeout_seconds, rate_limits=limits,
        clock=clock)


def _email_channel(name: str, config: EmailChannelConfig) -> Channel:
    """SMTP: no password over an unencrypted connection, a CA file that loads."""
    from outage_sentinel.channels import email

    if "@" not in config.sender:
        raise ChannelError(f"channels.{name}.sender: expected an e-mail address")
    if config.username and config.password is None:
        raise ChannelError(f"channels.{name}.password: required when username is set")
    if config.password is not None and config.security == "none":
        # AUTH over plain text would send the password in the clear.
        raise ChannelError(f"channels.{name}.security: 'none' with a password would send "
                           f"it unencrypted; use starttls or ssl")
    context = None
    if config.ca_file is not None:
        if config.security == "none":
            raise ChannelError(f"channels.{name}.ca_file: only used with starttls or ssl")
        try:
            context = ssl.create_default_context(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ChannelError(f"channels.{name}.ca_file: cannot load {config.ca_file} as "
                               f"PEM CA certificates ({exc})") from None
    return email.EmailChannel(
        name, host=config.host, port=config.port, security=config.security,
        username=config.username,
        password=_secret(config.password) if config.password is not None else None,
        sender=config.sender, timeout=config.timeout_seconds, ssl_context=context)


def build_channels(configs: Mapping[str, Any], *,
                   clock: Callable[[], float] = time.time) -> dict[str, Channel]:
    """All enabled channels, by config name."""
    channels: dict[str, Channel] = {}
    for name, config in configs.items():
        if not config.enabled:
            continue
        channels[name] = build_channel(name, config, clock=clock)
    return channels
