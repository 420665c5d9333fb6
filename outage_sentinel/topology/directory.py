"""The bundle's lookups by name and by place, which :class:`~.index.Topology` delegates to."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from outage_sentinel.topology.columns import NodeMap, NodeTable
from outage_sentinel.topology.model import Customer, Liaison, Meter


class Directory:
    """What a name or a record points at, beside the network index.

    It owns the lookups keyed by strings from outside the network: which node a reference
    names (a node id, a node name, a meter id, a registered customer's id: :meth:`resolve`;
    every node of a name: :meth:`named`), the feeders a name means and the name a feeder is
    shown by (:attr:`feeder_by_name`, :attr:`feeders_by_name`, :attr:`feeder_names`), and
    the records filed by place: a village's liaisons (:attr:`liaisons_by_village`) and
    transformer areas (:meth:`village_transformers`), an area's registered customers
    (:attr:`customers_by_transformer`), the area of a meter (:attr:`meter_transformer`) and
    the villages of areas (:meth:`villages_of`). The maps a topology asks for rarely (node
    names, customers, village areas, feeder display names) are built on first use.
    """

    def __init__(self, table: NodeTable, nodes: NodeMap, source_index: tuple[int, ...],
                 tx_index: tuple[int, ...], liaisons: list[Liaison], customers: list[Customer],
                 meters: list[Meter]) -> None:
        self._table = table
        self._nodes = nodes
        self._source_index = source_index
        self._tx_index = tx_index
        self._customers = customers
        self.liaisons_by_village: dict[str, list[Liaison]] = {}
        for liaison in liaisons:
            self.liaisons_by_village.setdefault(liaison.village, []).append(liaison)
        self.customers_by_transformer: dict[str, list[Customer]] = {}
        for customer in customers:
            self.customers_by_transformer.setdefault(customer.transformer, []).append(customer)
        self.meter_transformer: dict[str, str] = {m.id: m.transformer for m in meters}
        self._customer_transformer: dict[str, str] | None = None
        #: Feeder name (``feeder_name`` column of the source node, else its name) -> feeder id;
        #: the first feeder in the bundle for a name several share (see :attr:`feeders_by_name`).
        self.feeder_by_name: dict[str, str] = {}
        #: Feeder name -> every feeder shown by it, in bundle order: two substations may each
        #: have a "10kV城东线", and a record naming it means one of them, not the first.
        self.feeders_by_name: dict[str, tuple[str, ...]] = {}
        feeder_names = table.extra.get("feeder_name")
        for i in source_index:
            feeder = table.feeders[i]
            if feeder:
                label = feeder_names[i] if feeder_names is not None else None
                for name in (label or "", table.names[i]):
                    if name:
                        self.feeder_by_name.setdefault(name, feeder)
                        known = self.feeders_by_name.get(name, ())
                        if feeder not in known:
                            self.feeders_by_name[name] = (*known, feeder)
        self._by_name: dict[str, str] | None = None
        self._shared_names: dict[str, tuple[str, ...]] = {}
        self._feeder_names: dict[str, str] | None = None

    def resolve(self, ref: str) -> str | None:
        """Map an id, a node name, a meter id or a customer id to a node id (None if unknown).

        A name several nodes share resolves to none of them (:meth:`named` lists them): taking
        the first would place a record on another village's area and send the crew to the
        wrong line; the caller narrows the candidates by what else the record says."""
        if ref in self._table.pos:
            return ref
        by_name = self._names()
        if ref in by_name:
            return None if ref in self._shared_names else by_name[ref]
        if ref in self.meter_transformer:
            return self.meter_transformer[ref]
        if self._customer_transformer is None:
            self._customer_transformer = {c.id: c.transformer for c in self._customers}
        return self._customer_transformer.get(ref)

    def named(self, name: str) -> tuple[str, ...]:
        """Every node called ``name``, in bundle order (empty when none is)."""
        by_name = self._names()
        if name not in by_name:
            return ()
        return self._shared_names.get(name) or (by_name[name],)

    def _names(self) -> dict[str, str]:
        """Name -> the first node of that name, built on first use; the names several nodes
        share go to :attr:`_shared_names` with all their nodes (only looked for when the
        bundle has any: a million distinct names cost one C-level pass)."""
        if self._by_name is None:
            names, ids = self._table.names, self._table.ids
            by_name = dict(zip(reversed(names), reversed(ids), strict=True))
            by_name.pop("", None)
            shared: dict[str, list[str]] = {}
            if len(by_name) < len(names) - names.count(""):
                for name, nid in zip(names, ids, strict=True):
                    if name and by_name[name] != nid:
                        shared.setdefault(name, [by_name[name]]).append(nid)
            self._shared_names = {name: tuple(nids) for name, nids in shared.items()}
            self._by_name = by_name
        return self._by_name

    @property
    def feeder_names(self) -> dict[str, str]:
        """Feeder id -> display name: the ``feeder_name`` column of its source node, else the
        node's name, else the id. Built once (notices and reports ask for it constantly)."""
        cached = self._feeder_names
        if cached is None:
            cached = {}
            ids = self._table.ids
            for source_id in [ids[i] for i in self._source_index]:
                node = self._nodes[source_id]
                if node.feeder:
                    cached.setdefault(node.feeder,
                                      node.extra.get("feeder_name") or node.name or node.feeder)
            self._feeder_names = cached
        return cached

    @functools.cached_property
    def _village_areas(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        villages, pos, ids = self._table.villages, self._table.pos, self._table.ids
        for t in [ids[i] for i in self._tx_index]:
            v = villages[pos[t]]
            if v:
                out.setdefault(v, []).append(t)
        return {v: tuple(ts) for v, ts in out.items()}

    def village_transformers(self, village_id: str) -> tuple[str, ...]:
        """The village's transformer areas, in bundle order (built once per topology)."""
        return self._village_areas.get(village_id, ())

    def villages_of(self, transformer_ids: Iterable[str]) -> list[str]:
        """Distinct village ids of the transformer areas, in first-seen order."""
        seen: dict[str, None] = {}
        villages, pos = self._table.villages, self._table.pos
        for t in transformer_ids:
            v = villages[pos[t]]
            if v:
                seen.setdefault(v, None)
        return list(seen)
