"""Village liaison notices: who in a village hears about an incident, and what they read.

Pure: given the topology, the incident and the notices :func:`incidents.plan_notices` decided,
return outbox rows. Liaisons of a village who share a channel and target (the same WeCom group)
get one message that @-mentions all of them, not one each; an SMS target is one person.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from outage_sentinel.incidents import Incident, Notice, village_etr
from outage_sentinel.labels import KIND_LABELS
from outage_sentinel.topology import Topology

#: Notice purposes liaisons never receive: a village the estimate stopped inferring is told
#: nothing (it was only ever "可能受影响"); the command centre's summary says so.
COMMAND_ONLY_PURPOSES = ("withdrawn",)


class Renderer:
    """Jinja2 templates, built-in under ``outage_sentinel/templates``, overridable by a directory."""

    def __init__(self, language: str = "zh", override_dir: Path | None = None) -> None:
        loaders: list[Any] = []
        if override_dir is not None:
            loaders.append(FileSystemLoader(str(override_dir)))
        loaders.append(PackageLoader("outage_sentinel", "templates"))
        self.language = language
        self.env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                               autoescape=False, trim_blocks=False, keep_trailing_newline=False)

    def render(self, name: str, **context: Any) -> str:
        template = self.env.get_template(f"{name}.{self.language}.j2")
        return template.render(**context).strip()


def reported_devices(incident: Incident, devices: Sequence[str]) -> list[str]:
    """The devices of ``devices`` that one of the incident's records names as operated."""
    named = {m.device for m in incident.members.values() if m.device}
    return [d for d in devices if d in named]


class LiaisonPlanner:
    """Turns incident notices into outbox rows for village liaisons."""

    def __init__(self, topology: Topology, renderer: Renderer, tz: tzinfo,
                 roles: Sequence[str] = ("village_liaison", "grid_manager",
                                         "transformer_manager")) -> None:
        self.topology = topology
        self.renderer = renderer
        self.tz = tz
        self.roles = tuple(roles)
        self.feeder_names = topology.feeder_names

    def rows(self, incident: Incident, notices: Sequence[Notice], now: datetime,
             previous: Incident | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for notice in notices:
            if notice.purpose in COMMAND_ONLY_PURPOSES:
                continue  # a withdrawn inference is the command centre's business only
            for village_id in notice.villages:
                out.extend(self._village_rows(incident, notice, village_id, now, previous))
        return out

    def _village_rows(self, incident: Incident, notice: Notice, village_id: str, now: datetime,
                      previous: Incident | None) -> list[dict[str, Any]]:
        topo = self.topology
        village = topo.villages.get(village_id)
        if village is None:
            return []
        estimate = incident.estimate
        if village_id not in estimate.villages and previous is not None:
            estimate = previous.estimate  # a village no longer affected: describe what it had
        # Outage and update notices count what is still off; restored/cancelled what was off.
        areas = incident.off if notice.purpose in ("outage", "update") and estimate is \
            incident.estimate else estimate.transformers
        in_village = [t for t in areas if topo.nodes[t].village == village_id]
        confirmed = [t for t in in_village if incident.mark(t) == "reported"]
        possible = [t for t in in_village if incident.mark(t) != "reported"]
        village_customers = topo.customers_of(in_village)
        lang = self.renderer.language
        context = {
            "incident_id": incident.id,
            "revision": incident.revision,
            "kind": incident.kind,
            "kind_label": KIND_LABELS[lang].get(incident.kind, incident.kind),
            "village": village,
            "feeder_label": self._feeder_label(incident.feeder),
            # A device is named to liaisons only when a source named it: an inferred fault
            # point is the command centre's working hypothesis, not a fact to announce.
            "device_label": self._device_label(reported_devices(incident, estimate.devices)),
            "area_label": self._area_label(in_village, incident.area_text),
            "confirmed_label": self._area_label(confirmed, "") if confirmed else "",
            "possible_label": self._area_label(possible, "") if possible else "",
            "customers": estimate.customers,
            "village_customers": village_customers,
            "start_local": self._local(incident.start),
            "etr_local": self._local(village_etr(incident, village_id, topo)),
            "end_local": self._local(incident.end),
            "now_local": self._local(now),
            "cause": incident.cause,
            "purpose": notice.purpose,
        }
        body = self.renderer.render(f"liaison_{notice.purpose}", **context)
        params = {
            "village": village.name, "feeder": context["feeder_label"],
            "start": context["start_local"], "etr": context["etr_local"] or "",
            "households": village_customers, "incident": incident.id,
            "kind": incident.kind,
        }
        return self.liaison_rows(incident, village_id, notice.purpose, body, params=params)

    def liaison_rows(self, incident: Incident, village_id: str, purpose: str, body: str, *,
                     revision: int | None = None, params: dict[str, Any] | None = None
                     ) -> list[dict[str, Any]]:
        """Outbox rows carrying ``body`` to the liaisons of one village.

        Liaisons sharing a channel and target (one group chat) get one message mentioning all
        of them.
        """
        groups: dict[tuple[str, str], list[Any]] = {}
        for liaison in self.topology.liaisons_by_village.get(village_id, []):
            if liaison.role not in self.roles:
                continue
            target = liaison.target or liaison.phone
            groups.setdefault((liaison.channel, target), []).append(liaison)
        rows = []
        for (channel, target), members in sorted(groups.items()):
            phones = tuple(dict.fromkeys(m.phone for m in members if m.phone))
            rows.append({
                "incident_id": incident.id,
                "revision": incident.revision if revision is None else revision,
                "recipient": f"village:{village_id}:{channel}:{target}",
                "purpose": purpose,
                "channel": channel,
                "target": target,
                "audience": "liaison",
                "subject": body.splitlines()[0] if body else "",
                "body": body,
                "payload": {
                    "mentions": list(phones),
                    "village": village_id,
                    "roles": sorted({m.role for m in members}),
                    "params": params or {"village": village_id, "incident": incident.id},
                },
            })
        return rows

    def _feeder_label(self, feeder: str) -> str:
        return self.feeder_names.get(feeder, feeder)

    def _device_label(self, devices: Sequence[str]) -> str:
        names = [self.topology.nodes[d].name or d for d in devices if d in self.topology.nodes]
        return "、".join(names) if self.renderer.language == "zh" else ", ".join(names)

    def _area_label(self, transformers: Sequence[str], area_text: str) -> str:
        names = [self.topology.nodes[t].name or t for t in transformers]
        sep = "、" if self.renderer.language == "zh" else ", "
        if not names:
            return area_text or "-"
        if len(names) > 8:
            zh = self.renderer.language == "zh"
            more = f"等{len(names)}个台区" if zh else f" and {len(names) - 8} more"
            return sep.join(names[:8]) + more
        return sep.join(names)

    def _local(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
