"""The notifier types: how one alert event becomes a message, one class per ``type:``.

A :class:`NotifierType` reads nothing and sends nothing: given a configured
:class:`~agentwatch.alert.routes.Notifier` (its URL, headers, routing key), an
event (``trigger``, ``resolve``, ``repeat``) and the Alert object, it answers
the HTTP request to make, or delivers the event itself and answers None (the
``log`` type). The dispatcher (:mod:`agentwatch.alert.notify`) sends the
request, retries it and records the outcome. :data:`NOTIFIER_TYPES` is the
registry ``alerts.notifiers`` is validated against, so a new destination is
one class here:

>>> sorted(NOTIFIER_TYPES)
['log', 'pagerduty', 'slack', 'webhook']
>>> NOTIFIER_TYPES["pagerduty"].default_url
'https://events.pagerduty.com/v2/enqueue'
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, NamedTuple, Protocol

if TYPE_CHECKING:
    from agentwatch.alert.routes import Notifier

#: PagerDuty Events API v2.
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
#: The log notifier writes here.
alert_logger = logging.getLogger("agentwatch.alert")

#: PagerDuty limits (Events API v2).
PD_SUMMARY_MAX = 1024
PD_DEDUP_MAX = 255
#: Slack's limit on one mrkdwn text object is 3000 characters.
SLACK_TEXT_MAX = 2900
#: Example sessions shown in a Slack message.
SLACK_EXAMPLES = 5


class Request(NamedTuple):
    """One HTTP POST of a JSON body."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]


class NotifierType(Protocol):
    """One ``type:`` of notifier."""

    @property
    def name(self) -> str:
        """The ``type:`` value."""
        ...

    @property
    def keys(self) -> frozenset[str]:
        """The keys a notifier of this type takes in ``alerts.notifiers``."""
        ...

    @property
    def requires(self) -> frozenset[str]:
        """The secret keys it cannot do without (``url``, ``routing_key``)."""
        ...

    @property
    def default_url(self) -> str | None:
        """The URL when none is configured."""
        ...

    def request(self, notifier: Notifier, event: str, alert: Mapping[str, Any]) -> Request | None:
        """The request that carries ``event`` of ``alert``, or None when the event was delivered in process."""
        ...


def status_of(event: str) -> str:
    return "resolved" if event == "resolve" else "firing"


# -- messages --------------------------------------------------------------------


def webhook_payload(event: str, alert: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": 1, "status": status_of(event), "event": event, "alert": dict(alert)}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _labels_text(labels: Mapping[str, Any]) -> str:
    shown = [f"{k}={v}" for k, v in labels.items() if v]
    return ", ".join(shown) if shown else "all"


def slack_payload(event: str, alert: Mapping[str, Any]) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` (the notification fallback) and Block Kit ``blocks``."""
    word = {"trigger": "FIRING", "repeat": "STILL FIRING", "resolve": "RESOLVED"}.get(event, event.upper())
    icon = ":white_check_mark:" if event == "resolve" else (
        ":rotating_light:" if alert["severity"] == "page" else ":warning:")
    severity = str(alert["severity"]).upper()
    headline = f"{word} [{severity}] {alert['kind']} {alert['rule']}: {alert['summary']}"
    esc = _slack_escape
    title = (f"{icon} *{word}* [{severity}] *{esc(str(alert['kind']))}* `{esc(str(alert['rule']))}`\n"
             f"{esc(str(alert['summary']))}")
    evaluator = alert.get("evaluator") or ""
    if evaluator and alert.get("evaluator_version"):
        evaluator = f"{evaluator} (version {alert['evaluator_version']})"
    when = f"started {alert['started_at']}"
    if alert.get("resolved_at"):
        when += f"\nresolved {alert['resolved_at']}"
    fields = [
        ("Kind", str(alert["kind"])), ("Severity", str(alert["severity"])),
        ("Evaluator", evaluator or "-"), ("Dimension", str(alert.get("dimension") or "-")),
        ("Labels", _labels_text(alert.get("labels") or {})), ("Event time", when),
    ]
    if alert.get("owner"):
        fields.append(("Owner", str(alert["owner"])))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(title, SLACK_TEXT_MAX)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f"*{name}*\n{esc(value)}", 1900)}
                                       for name, value in fields]},
    ]
    figures = alert.get("figures") or {}
    if figures:
        lines = "\n".join(f"• {esc(str(k))}: {esc(_figure(v))}" for k, v in figures.items())
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _cut(f"*Figures*\n{lines}", SLACK_TEXT_MAX)}})
    sessions = list(alert.get("session_ids") or [])
    if sessions:
        shown = ", ".join(f"`{esc(s)}`" for s in sessions[:SLACK_EXAMPLES])
        more = f" and {len(sessions) - SLACK_EXAMPLES} more" if len(sessions) > SLACK_EXAMPLES else ""
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _cut(f"*Example sessions*\n{shown}{more}", SLACK_TEXT_MAX)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"<{alert['link']}|Open alert {alert['id']}> · agentwatch"}]})
    return {"text": _cut(headline, SLACK_TEXT_MAX), "blocks": blocks}


def pagerduty_dedup_key(key: str) -> str:
    """The alert's dedup key, cut to PagerDuty's 255 characters keeping its hash suffix."""
    return key if len(key) <= PD_DEDUP_MAX else key[: PD_DEDUP_MAX - 17] + key[-17:]


def _pd_timestamp(value: str | None) -> str | None:
    """RFC 3339 with milliseconds (the nanosecond form is more than PagerDuty parses)."""
    if not value:
        return None
    head, dot, rest = value.rstrip("Z").partition(".")
    return f"{head}.{(rest + '000')[:3]}Z" if dot else f"{head}Z"


def pagerduty_payload(event: str, alert: Mapping[str, Any], routing_key: str) -> dict[str, Any]:
    """An Events API v2 event; a resolve carries only the routing key and the dedup key."""
    dedup_key = pagerduty_dedup_key(str(alert["dedup_key"]))
    if event == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    labels = dict(alert.get("labels") or {})
    service = labels.get("service") or ""
    details: dict[str, Any] = dict(alert.get("figures") or {})
    details.update({
        "rule": alert["rule"], "dimension": alert.get("dimension") or None,
        "evaluator": alert.get("evaluator") or None, "evaluator_version": alert.get("evaluator_version") or None,
        "labels": labels, "session_ids": list(alert.get("session_ids") or []),
        "trace_ids": list(alert.get("trace_ids") or []), "started_at": alert["started_at"],
        "alert_id": alert["id"], "owner": alert.get("owner"),
    })
    payload: dict[str, Any] = {
        "summary": _cut(str(alert["summary"]) or f"{alert['kind']} {alert['rule']}", PD_SUMMARY_MAX),
        "source": f"agentwatch/{service}" if service else "agentwatch",
        "severity": "critical" if alert["severity"] == "page" else "warning",
        "timestamp": _pd_timestamp(alert.get("started_at")),
        "component": alert.get("evaluator") or alert.get("dimension") or alert["rule"],
        "group": service or labels.get("intent") or "agentwatch",
        "class": alert["kind"],
        "custom_details": details,
    }
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "links": [{"href": alert["link"], "text": f"agentwatch alert {alert['id']}"}],
        "client": "agentwatch",
        "client_url": alert["link"],
    }


def log_event(event: str, alert: Mapping[str, Any]) -> None:
    """The log notifier: one JSON line per alert event on the ``agentwatch.alert`` logger."""
    record = {
        "event": event, "status": status_of(event), "id": alert["id"], "kind": alert["kind"],
        "rule": alert["rule"], "severity": alert["severity"], "evaluator": alert.get("evaluator"),
        "labels": alert.get("labels"), "started_at": alert.get("started_at"),
        "resolved_at": alert.get("resolved_at"), "summary": alert.get("summary"), "link": alert.get("link"),
    }
    level = logging.INFO if event == "resolve" else logging.WARNING
    alert_logger.log(level, "alert %s %s", event, json.dumps(record, sort_keys=True, default=str),
                     extra={"alert": record})


def _url(notifier: Notifier) -> str:
    if notifier.url is None:
        raise ValueError(f"notifier {notifier.name} has no URL")
    return notifier.url


class Webhook:
    """``{"version": 1, "status", "event", "alert"}`` POSTed with the configured headers."""

    name: ClassVar[str] = "webhook"
    keys: ClassVar[frozenset[str]] = frozenset({"type", "name", "url", "headers"})
    requires: ClassVar[frozenset[str]] = frozenset({"url"})
    default_url: ClassVar[str | None] = None

    def request(self, notifier: Notifier, event: str, alert: Mapping[str, Any]) -> Request:
        return Request(_url(notifier), webhook_payload(event, alert), dict(notifier.headers))


class Slack:
    """A Slack incoming-webhook message; a resolve is a follow-up message."""

    name: ClassVar[str] = "slack"
    keys: ClassVar[frozenset[str]] = frozenset({"type", "name", "url"})
    requires: ClassVar[frozenset[str]] = frozenset({"url"})
    default_url: ClassVar[str | None] = None

    def request(self, notifier: Notifier, event: str, alert: Mapping[str, Any]) -> Request:
        return Request(_url(notifier), slack_payload(event, alert), {})


class PagerDuty:
    """A PagerDuty Events API v2 event (``trigger`` for repeats too) under the alert's dedup key."""

    name: ClassVar[str] = "pagerduty"
    keys: ClassVar[frozenset[str]] = frozenset({"type", "name", "routing_key", "url"})
    requires: ClassVar[frozenset[str]] = frozenset({"routing_key"})
    default_url: ClassVar[str | None] = PAGERDUTY_URL

    def request(self, notifier: Notifier, event: str, alert: Mapping[str, Any]) -> Request:
        return Request(_url(notifier), pagerduty_payload(event, alert, notifier.routing_key or ""), {})


class Log:
    """One JSON line on the ``agentwatch.alert`` logger; nothing leaves the process."""

    name: ClassVar[str] = "log"
    keys: ClassVar[frozenset[str]] = frozenset({"type", "name"})
    requires: ClassVar[frozenset[str]] = frozenset()
    default_url: ClassVar[str | None] = None

    def request(self, notifier: Notifier, event: str, alert: Mapping[str, Any]) -> None:
        log_event(event, alert)
        return None


#: Every notifier type by its ``type:`` value, in the order errors list them.
NOTIFIER_TYPES: dict[str, NotifierType] = {t.name: t for t in (Webhook(), Slack(), PagerDuty(), Log())}
