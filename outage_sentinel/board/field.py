"""The field's pages: a liaison's personal link opens the outage as it concerns their village,
with "已来电 / 仍停电" per transformer area. No sign-in: the signed link is the credential
(``field_links.py``), scoped to one incident, village and recipient, and expiring a day after
the incident ends.

An answer is evidence, folded by the same processor as every feed (source ``field``): "still
off" for an area the incident says is back reopens it (a nested fault, a missed step) and the
command centre is told; "power back" restores the area — unless the area's meters still report
it off: then the answer is kept, the incident keeps the area off, and the command centre sees
the disagreement (an ``evidence_conflict`` log step per area, and one ``field_conflict``
message per answer naming every area it disputes: a keyword reply answers for a whole village;
its own restoration step settles it); "still off" for an area the incident does not hold is a
new trouble report. Answers are idempotent per link and area: a second tap
changes the answer, it adds no report. Requests are limited per link and per address.

A crew's "fault found" names what the close-out would take, and devices that feed every area
the incident confirmed off (:func:`lifecycle.unfed_areas`), else it is refused naming the
areas; sent anyway (设备不符也上报), its step keeps them (``not_fed``) and says so.

Keyword replies (SMS, DingTalk, Feishu) are answers too, taken by :mod:`.replies` through
:meth:`FieldDesk.take_answer`; their webhook secrets and keywords are configured here.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from outage_sentinel.board.access import token_hash
from outage_sentinel.board.actions import USER_ERRORS, Actions
from outage_sentinel.board.photos import PhotoError, photo_path, photos_of, prune, store_photo
from outage_sentinel.crew import area_names
from outage_sentinel.events import OutageEvent
from outage_sentinel.field_links import (
    LINK_PREFIX,
    PUBLIC,
    Link,
    LinkError,
    short_key,
    stored_link,
    verify,
    verify_short,
)
from outage_sentinel.incidents import FIELD_SOURCE, Incident, held_disputes, newly_disputed
from outage_sentinel.lifecycle import StepInputError, confirmed_devices, unfed_areas
from outage_sentinel.logs import get_logger
from outage_sentinel.store import Store
from outage_sentinel.topology import Topology

ANSWERS = {"back": "已来电", "dark": "仍停电"}
LOG = get_logger(component="field")


class FieldError(ValueError):
    """A field request refused (the message is shown to the liaison)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def fault_device_refused(topology: Topology, node_id: str) -> str | None:
    """Why a crew may not name ``node_id`` as the fault it found (None: it may). The close-out's
    own check (:func:`lifecycle.confirmed_devices`: a device that operates, the source, or a
    transformer): what the crew names becomes the truth the localiser learns from, so a pole
    or junction taken here would be refused at close-out yet kept as the device that
    operated."""
    try:
        if confirmed_devices(topology, node_id) == [node_id]:
            return None
    except StepInputError:
        pass
    node = topology.nodes.get(node_id)
    kind = node.kind if node is not None else "unknown"
    return (f"device {node_id!r} is a {kind}, not a device that operates (breaker, recloser, "
            "sectionalizer, fuse, switch) nor a transformer: name the one that cleared the "
            "fault, and put what was found at the pole in the note")


def position(body: dict[str, Any]) -> tuple[float, float] | None:
    """The crew's position from its page (the browser's, when allowed), or None."""
    if body.get("lat") is None and body.get("lon") is None:
        return None
    try:
        lat, lon = float(body["lat"]), float(body["lon"])
    except (KeyError, TypeError, ValueError):
        raise FieldError("lat, lon: numbers") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise FieldError("lat, lon: a position on Earth")
    return round(lat, 6), round(lon, 6)


@dataclass
class Throttle:
    """At most ``limit`` requests per ``window`` seconds per key (a link, an address)."""

    limit: int
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _hits: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys
                self._hits = {k: v for k, v in self._hits.items() if v}
            return True


@dataclass
class FieldDesk:
    """The field's pages and their answers. The reply webhooks' settings below are read, at
    each call, by :class:`.replies.FieldReplies`, which takes its answers through
    :meth:`take_answer`."""

    store: Store
    actions: Actions
    topology: Callable[[], Topology]
    secret: bytes
    clock: Callable[[], datetime]
    #: Where crews' photos are kept (``<state_dir>/photos``), and for how long.
    photos: Path
    photo_days: float = 180.0
    #: The SMS reply webhook's path secret (None: no webhook) and its keywords.
    sms_token: str | None = None
    #: The DingTalk outgoing robot's app secret (None: no callback).
    dingtalk_secret: str | None = None
    #: Feishu: verification token (None: no callback), encrypt key, chat id -> group target.
    feishu_token: str | None = None
    feishu_key: str | None = None
    feishu_chats: dict[str, str] = field(default_factory=dict)
    sms_keywords: dict[str, str] = field(default_factory=lambda: {"1": "back", "2": "dark"})
    per_link: Throttle = field(default_factory=lambda: Throttle(30))
    per_address: Throttle = field(default_factory=lambda: Throttle(300))

    def open(self, token: str, address: str) -> tuple[Link, Incident]:
        """The link and its incident, or :class:`FieldError`."""
        if not self.per_address.allow(address) or not self.per_link.allow(token[:64]):
            raise FieldError("请求过于频繁，请稍后再试", 429)
        try:
            bare = self.check(token)  # signature and age first
            row = self.store.get_incident(bare.incident_id)
            if row is None:
                raise LinkError("this link has expired")
            inc = Incident.from_json(row["state"])
            ended = None if inc.status == "active" else (row.get("closed_at") or inc.end or
                                                         row["updated_at"])
            return self.check(token, ended), inc
        except LinkError as exc:
            raise FieldError(str(exc), 403) from None

    def check(self, token: str, ended: datetime | None = None) -> Link:
        """The link of a short token (its stored row) or of a long one (sent before short
        links), or :class:`LinkError`."""
        if "." in token:
            return verify(self.secret, token, self.clock(), ended)
        key = short_key(token)
        stored = stored_link(self.store.kv_get(LINK_PREFIX + key)) if key else None
        return verify_short(self.secret, token, stored, self.clock(), ended)

    # -- what each page shows, from its token ---------------------------------------------------

    def liaison_page(self, token: str, address: str) -> dict[str, Any]:
        return self.view(*self.open_liaison(token, address))

    def crew_page(self, token: str, address: str) -> dict[str, Any]:
        return self.crew_view(*self.open_crew(token, address))

    def public_page(self, token: str, address: str) -> dict[str, Any]:
        return self.public_view(self.open_public(token, address))

    def open_public(self, token: str, address: str) -> Incident:
        """The incident of a public progress link."""
        link, inc = self.open(token, address)
        if link.village != PUBLIC:
            raise FieldError("this link is not a progress page's", 403)
        return inc

    def public_view(self, inc: Incident) -> dict[str, Any]:
        """Status, cause, expected restoration, photos; nothing personal."""
        topology = self.topology()
        causes = [str((e.get("details") or {}).get("cause") or "")
                  for e in self.store.incident_log(inc.id) if e["stage"] in ("fault_found",
                                                                             "closed")]
        row = self.store.get_incident(inc.id) or {}
        return {"incident": inc.id, "status": inc.status, "stage": inc.stage,
                "feeder": topology.feeder_names.get(inc.feeder, inc.feeder),
                "villages": [topology.villages[v].name for v in inc.estimate.villages
                             if v in topology.villages],
                "cause": row.get("cause_category") or next((c for c in reversed(causes) if c),
                                                           ""),
                "etr": inc.etr.isoformat() if inc.etr else None,
                "photos": self.public_photos(inc.id)}

    def public_photos(self, incident_id: str) -> list[str]:
        """The crews' photos of the incident (a liaison's stay with the command centre)."""
        crews = {str((e.get("details") or {}).get("file")) for e in
                 self.store.incident_log(incident_id)
                 if e["stage"] == "photo" and str(e["actor"]).startswith("crew:")}
        return [n for n in photos_of(self.photos, incident_id) if n in crews]

    def photo(self, token: str, address: str, name: str) -> Path:
        inc = self.open_public(token, address)
        path = photo_path(self.photos, inc.id, name)
        if path is None or name not in self.public_photos(inc.id):
            raise FieldError("no such photo", 404)
        return path

    def keep_photo(self, incident_id: str, data: Any) -> str:
        """A photo upload (``{"data": bytes}``) checked, cleaned and kept; its file name."""
        try:
            name = store_photo(self.photos, incident_id, data.get("data") or b"")
        except PhotoError as exc:
            raise FieldError(str(exc), 400) from None
        prune(self.photos, self.photo_days)
        return name

    def crew_photo(self, token: str, address: str, body: dict[str, Any]) -> dict[str, Any]:
        """A crew's photo, with the device it found the fault at (when it has said)."""
        crew, inc = self.open_crew(token, address)
        found = [e for e in self.store.incident_log(inc.id) if e["stage"] == "fault_found"]
        device = str((found[-1].get("details") or {}).get("device") or "") if found else ""
        name = self.keep_photo(inc.id, body)
        self.actions.core.lifecycle.crew_note(inc.id, f"crew:{crew}", "photo", "",
                                              {"file": name, "device": device})
        return self.crew_view(crew, inc)

    def liaison_photo(self, token: str, address: str, body: dict[str, Any]
                      ) -> dict[str, Any]:
        """A liaison's photo (``area``: one of the village's areas, or none)."""
        link, inc = self.open_liaison(token, address)
        area = str(body.get("area") or "")
        if area and area not in self.topology().village_transformers(link.village):
            raise FieldError("area: one of this village's transformer areas")
        name = self.keep_photo(inc.id, body)
        self.actions.core.lifecycle.field_photo(inc.id, f"liaison:{link.village}", {
            "file": name, "village": link.village, "area": area})
        return self.view(link, inc)

    def open_liaison(self, token: str, address: str) -> tuple[Link, Incident]:
        """A liaison's link and its incident (a crew's link opens the crew's page only)."""
        link, inc = self.open(token, address)
        if link.village.startswith("crew:"):
            raise FieldError("this link is a crew's", 403)
        return link, inc

    def view(self, link: Link, inc: Incident) -> dict[str, Any]:
        """What the liaison sees: their village's areas in this outage; nothing personal."""
        topology = self.topology()
        village = topology.villages.get(link.village)
        areas = [t for t in topology.village_transformers(link.village)]
        told = {a["area"]: a["answer"] for a in self.store.answers(inc.id)
                if a["village"] == link.village}
        return {
            "village": village.name if village else link.village,
            "status": inc.status, "kind": inc.kind, "stage": inc.stage,
            "start": inc.start.isoformat(), "etr": inc.etr.isoformat() if inc.etr else None,
            "areas": [{"id": t, "name": topology.nodes[t].name or t,
                       "state": "unaffected" if inc.status == "cancelled"
                       else "off" if t in inc.off
                       # counted back when the records ended, nothing saying so: asked
                       else "unconfirmed" if t in inc.unconfirmed
                       # the liaison (or a meter) said it was still off: a new outage has it
                       else "continued" if t in inc.continued
                       else "back" if t in inc.restored
                       else "unaffected", "told": told.get(t)} for t in areas],
        }

    def answer(self, token: str, address: str, body: dict[str, Any]) -> dict[str, Any]:
        link, inc = self.open_liaison(token, address)
        area, answer = str(body.get("area") or ""), str(body.get("answer") or "")
        note = str(body.get("note") or "")[:500]
        if answer not in ANSWERS:
            raise FieldError("answer: back or dark")
        if area not in self.topology().village_transformers(link.village):
            raise FieldError("area: one of this village's transformer areas")
        self.take_answer(token_hash(token), inc, [area], link.village, answer, note)
        return self.view(link, self.actions.core.processor.incident(inc.id))

    def take_answer(self, key: str, inc: Incident, areas: Sequence[str], village: str,
                    answer: str, note: str) -> None:
        """Record a liaison's answer for ``areas`` of ``village`` (a tap on the page: one
        area; a keyword reply, :mod:`.replies`: every area the village was told of) and let
        it act: "back" or "dark" as a report on the incident, per area. One answer is one
        word to the command centre, naming every area it concerns: the areas whose meters
        contradict a "back" (:meth:`_meters_disagree`), or a "dark" on an incident the
        command centre cancelled (a false alarm), which does not reopen it and tell the
        village of an outage at once: the command centre checks."""
        now = self.clock()
        taken = {area: revision for area in dict.fromkeys(areas)
                 if (revision := self.store.record_answer(key, area, inc.id, village, answer,
                                                          note, now)) is not None}
        if not taken:
            return
        if inc.status == "cancelled" and answer == "dark":
            self._ask_command_centre(inc, taken, village, now)
            return
        events = [answer_event(key, inc, area, answer, revision, now)
                  for area, revision in taken.items()]
        for event in events:
            self.actions.core.processor.report(event, now)
        if answer == "back":
            self._meters_disagree(inc, village, events, now)

    def _meters_disagree(self, before: Incident, village: str, events: Sequence[OutageEvent],
                         now: datetime) -> None:
        """A liaison's 已来电 that the meters contradict for some of its areas (they still
        report them off, so the incident holds them off: :func:`disputed_areas`) is kept and
        shown: a log step per such area naming it, the answer and the meters, and one word to
        the command centre naming them all, which restores an area by hand if the liaison is
        right. Nobody else is told anything."""
        after = self.actions.core.processor.incident(before.id)
        new = newly_disputed(before, after)
        disputed = [e for e in events
                    if f"{e.source}|{e.event_id}" in new.get(e.transformers[0], ())]
        if not disputed:
            return
        areas = [e.transformers[0] for e in disputed]
        life = self.actions.core.lifecycle
        body = disagreement(self.topology(), after, areas, village,
                            life.planner.renderer.language)
        answer = "|".join(f"{e.event_id}:{e.revision}" for e in disputed)
        with self.store.transaction() as conn:
            for area in areas:
                self.store.log_in(conn, after.id, now, "evidence_conflict",
                                  f"liaison:{village}", CONFLICT_NOTE,
                                  {"transformers": [area], "village": village,
                                   "said": "field_back", "against": "meters"})
            # one message per answer (its areas and their revisions): the outbox key stays
            # unique
            self.store.enqueue_in(conn, life.command_rows(
                after, "field_conflict", body,
                revision=zlib.crc32(answer.encode()) & 0x7FFFFFFF), now)

    def _ask_command_centre(self, inc: Incident, taken: Mapping[str, int], village: str,
                            now: datetime) -> None:
        """A liaison's 仍停电 for the ``taken`` areas (with their answers' revisions) of an
        incident the command centre cancelled: one word asking it to check."""
        life, topo = self.actions.core.lifecycle, self.topology()
        name = topo.villages[village].name if village in topo.villages else village
        areas = "、".join(area_names(topo, taken))
        body = (f"【联络人反馈待核实】{name}联络人报告{areas}仍停电，但{inc.id}已取消"
                f"（{inc.cancel_reason or '误报'}）。请核实：确有停电请新建事件或撤销取消。"
                if life.planner.renderer.language == "zh" else
                f"[Liaison report to check] {name}'s liaison reports {areas} still off, "
                f"but {inc.id} was cancelled ({inc.cancel_reason or 'false alarm'}). Check: "
                "open an incident if it is off.")
        answer = "|".join(f"{area}:{revision}" for area, revision in taken.items())
        with self.store.transaction() as conn:
            # one message per answer (its areas and their revisions): the outbox key stays
            # unique
            self.store.enqueue_in(conn, life.command_rows(
                inc, "field_dark", body,
                revision=zlib.crc32(answer.encode()) & 0x7FFFFFFF), now)

    # -- the crew's page -----------------------------------------------------------------------

    def open_crew(self, token: str, address: str) -> tuple[str, Incident]:
        """The crew id of a crew link and its incident, while the crew is still the one
        dispatched to it; else :class:`FieldError`."""
        link, inc = self.open(token, address)
        if not link.village.startswith("crew:"):
            raise FieldError("this link is not a crew's", 403)
        crew = link.village[5:]
        row = self.store.get_incident(inc.id)
        if row is None or row.get("crew_id") != crew:
            raise FieldError("another crew has this incident now", 403)
        return crew, inc

    def crew_view(self, crew: str, inc: Incident) -> dict[str, Any]:
        topology = self.topology()
        log = [{"stage": e["stage"], "at": e["at"].isoformat(), "actor": e["actor"]}
               for e in self.store.incident_log(inc.id)]
        return {"incident": inc.id, "crew": crew, "status": inc.status, "stage": inc.stage,
                "feeder": topology.feeder_names.get(inc.feeder, inc.feeder),
                # what the crew may name as the fault it found (no poles: see _found)
                "section": [{"id": d, "name": topology.nodes[d].name or d}
                            for d in inc.estimate.section if d in topology.nodes
                            and fault_device_refused(topology, d) is None],
                "off": [{"id": t, "name": topology.nodes[t].name or t} for t in inc.off
                        if t in topology.nodes],
                "etr": inc.etr.isoformat() if inc.etr else None, "log": log[-12:]}

    def crew_step(self, token: str, address: str, body: dict[str, Any]) -> dict[str, Any]:
        """One step from the crew's page, through the operator verbs' code, the crew as actor."""
        crew, inc = self.open_crew(token, address)
        step, note = str(body.get("step") or ""), str(body.get("note") or "")[:500]
        actor, life = f"crew:{crew}", self.actions.core.lifecycle
        refused = "failed"  # every step the crew's page takes is audited, done or refused
        try:
            if step == "arrive":
                life.arrive(inc.id, actor, note, position(body))
            elif step == "fault_found":
                topology = self.topology()
                found = self._found(topology, inc, body)
                life.crew_note(inc.id, actor, step, found_note(
                    topology, note, found, life.planner.renderer.language), found)
            elif step in ("accepted", "on_the_way"):
                life.crew_note(inc.id, actor, step, note)
            elif step == "restore":
                # No list: every area (as the CLI); an empty list (nothing ticked) is refused.
                areas = {"transformers": body["transformers"]} if "transformers" in body else {}
                self.actions.incident_step(inc.id, "restore", {**areas, "note": note}, actor)
            elif step == "etr":
                self._command_etr_first(inc.id)
                self.actions.incident_step(inc.id, "etr", {"time": body.get("time"),
                                                           "note": note}, actor)
            else:
                raise FieldError("step: accepted, on_the_way, arrive, fault_found, restore, etr")
            refused = ""
        except USER_ERRORS as exc:
            refused = str(exc)
            raise FieldError(refused, 409) from None
        except FieldError as exc:
            refused = str(exc) or "refused"
            raise
        finally:
            self.store.audit(self.clock(), actor, "field", ok=not refused, action=step,
                             target=inc.id, detail=refused[:200])
        return self.crew_view(crew, self.actions.core.processor.incident(inc.id))

    def _command_etr_first(self, incident_id: str) -> None:
        """The command centre's ETR is its correction: a crew's page does not overrule it (the
        crew tells the command centre, which sets it) until the command centre takes it back
        (``etr_cleared``)."""
        for e in reversed(self.store.incident_log(incident_id)):
            if e.get("stage") == "etr_cleared":
                return
            if e.get("stage") == "etr_set":
                if not str(e.get("actor") or "").startswith("crew:"):
                    raise FieldError("the command centre set the expected restoration time; "
                                     "tell it the new time", 409)
                return

    @staticmethod
    def _found(topology: Topology, inc: Incident, body: dict[str, Any]) -> dict[str, Any]:
        """A crew's "fault found": where (one or several devices of the suspected section,
        comma separated: a storm's crew may find two blown fuses) and the cause. Only what
        the close-out would take (:func:`fault_device_refused`), feeding together every area
        the incident confirmed off (:func:`unfed_areas`) unless ``device_anyway`` (then the
        areas they do not feed are kept, ``not_fed``): the device is kept as the truth the
        localiser is refitted from."""
        devices = [d for d in str(body.get("device") or "").split(",") if d]
        anyway = body.get("device_anyway")
        if anyway not in (None, True, False):
            raise FieldError("device_anyway: true or false")
        if any(d not in inc.estimate.section + inc.estimate.devices for d in devices):
            raise FieldError("device: one of the suspected section")
        for d in devices:
            if why := fault_device_refused(topology, d):
                raise FieldError(why)
        # The close-out's rule too: the devices feed every area confirmed off, or the crew
        # says so anyway (the areas kept with the step, as ``close --device-anyway`` does).
        not_fed = unfed_areas(topology, inc, devices)
        if not_fed and not anyway:
            raise FieldError(crew_unfed_message(topology, inc, devices, not_fed), 409)
        found: dict[str, Any] = {"device": devices[0] if devices else "",
                                 "cause": str(body.get("cause") or "")[:60]}
        if len(devices) > 1:
            found["devices"] = devices
        if not_fed:
            found["not_fed"] = not_fed
            LOG.warning("crew_device_not_feeding", incident_id=inc.id, devices=devices,
                        areas=not_fed)
        return found


#: The crew page's box that sends a "fault found" whose devices do not feed every area off.
ANYWAY_LABEL = "设备不符也上报"


def shown_areas(topology: Topology, areas: Sequence[str]) -> str:
    """``areas`` by name, the first ten (… for the rest)."""
    return "、".join(area_names(topology, areas[:10])) + (" …" if len(areas) > 10 else "")


def crew_unfed_message(topology: Topology, inc: Incident, devices: Sequence[str],
                       not_fed: Sequence[str]) -> str:
    """Why the crew's "fault found" at ``devices`` is refused: the areas ``inc`` confirmed
    off that they do not feed (:func:`unfed_areas`), named, and how to send it anyway."""
    shown = "、".join(area_names(topology, devices))
    areas = shown_areas(topology, not_fed)
    return (f"{inc.id}: 设备{shown}不在台区{areas}的上游。请同时选上供这些台区的设备（多处"
            f"故障各选一个）；现场确系如此，勾选“{ANYWAY_LABEL}”后再提交 / {', '.join(devices)} "
            f"does not feed {len(not_fed)} area(s) confirmed off ({areas}): name the "
            f"device(s) above them too, or tick {ANYWAY_LABEL} and send again")


def found_note(topology: Topology, note: str, found: Mapping[str, Any], language: str) -> str:
    """The crew's note on a "fault found", and, when it was sent anyway, that its devices do
    not feed the areas named (so the command centre's word says so, not only the log)."""
    not_fed = list(found.get("not_fed") or ())
    if not not_fed:
        return note
    areas = shown_areas(topology, not_fed)
    said = (f"所报设备不在台区{areas}的上游（班组确认上报）" if language == "zh" else
            f"the device named does not feed {areas} (sent anyway by the crew)")
    return f"{note}；{said}" if note else said


#: The log step's note when a liaison's 已来电 is not taken because the meters say off.
CONFLICT_NOTE = ("liaison replied power back (已来电); the area's meters still report it off: "
                 "kept off until they agree or the command centre restores it")


def disagreement(topology: Topology, inc: Incident, areas: Sequence[str], village: str,
                 language: str) -> str:
    """The command centre's word that ``village``'s liaison said ``areas`` have power back
    while their meters still report them off (the answer was not taken as a restoration):
    暂未确认 for those whose power-off the AMI screen holds, not released yet
    (:func:`held_disputes`)."""
    name = topology.villages[village].name if village in topology.villages else village
    names = area_names(topology, areas)
    held = set(held_disputes(inc))
    unsure = [n for t, n in zip(areas, names, strict=True) if t in held]
    if language == "zh":
        some = "" if not unsure else "（暂未确认）" if len(unsure) == len(names) else \
            f"（其中{'、'.join(unsure)}暂未确认）"
        return (f"【联络人反馈与电表不符】{name}联络人回复{'、'.join(names)}已来电，但"
                f"{'该' if len(names) == 1 else '这些'}台区电表仍报停电{some}（{inc.id}）。"
                "未按恢复送电处理；请核实，确已来电请执行恢复操作。")
    one = len(names) == 1
    some = "" if not unsure else " (not confirmed yet)" if len(unsure) == len(names) else \
        f" ({', '.join(unsure)} not confirmed yet)"
    return (f"[Liaison and meters disagree] {name}'s liaison replied {', '.join(names)} "
            f"{'has' if one else 'have'} power back, but {'its' if one else 'their'} meters "
            f"still report {'it' if one else 'them'} off{some} ({inc.id}). Not taken as "
            "restored: check, and record the restoration if the liaison is right.")


def answer_event(key: str, inc: Incident, area: str, answer: str, revision: int,
                 now: datetime) -> OutageEvent:
    """The event a liaison's answer about ``area`` of ``inc`` is folded in as (``dark``: still
    off; otherwise back), keyed by the link or reply ``key`` it came by."""
    dark = answer == "dark"
    # Still dark after the outage it answers ended (planned work over, power said back):
    # that is a fault now, not the planned work again.
    kind = "fault" if dark and inc.status != "active" else inc.kind
    return OutageEvent(
        source=FIELD_SOURCE, event_id=f"{key[:24]}:{area}", revision=str(revision),
        kind=kind, status="active" if dark else "restored",
        signal="dead" if dark else "alive", start=now, end=None if dark else now,
        transformers=(area,), area_text=f"联络人反馈：{ANSWERS[answer]}",
        raw={"incident_id": inc.id, "answer": answer})
