"""The feeder topology: loading and validating a topology bundle, and the index the hot path uses.

A bundle is a directory of UTF-8 CSV files (docs/design.md §3). :func:`load_bundle` reads it, checks
every rule and raises :class:`TopologyError` listing *all* problems (file, row, id) at once.

Everything is held column-wise so that a province-size bundle (a million nodes) loads in a few
seconds and a few hundred megabytes: the CSVs are parsed into columns, validated with set and
array operations, and node fields are kept in per-column lists; :attr:`Topology.nodes` is a
read-only mapping that builds :class:`Node` objects on access. The energised network (a forest
rooted at the sources, normally-open devices removed) is indexed with numpy, level by level from
the sources: parent pointers, an Euler-tour interval per node (so "is X downstream of Y" and
"which transformer areas are downstream of Y" are O(1) / O(log n)), and the nearest protective
device above every node. The same breadth-first pass checks the network (one source per
component, no cycles); networkx is only used to describe a cycle found, and for
:attr:`Topology.graph` on demand.

Rooms: :mod:`.model` (kinds, columns, problems, record types), :mod:`.columns` (column
storage), :mod:`.index` (the energised network's index and :class:`Topology`),
:mod:`.directory` (the lookups by name and place a :class:`Topology` answers through), :mod:`.bundle`
(reading a bundle and checking every rule).
"""

from __future__ import annotations

from outage_sentinel.topology.bundle import (
    RawTable,
    gc_paused,
    load_bundle,
    parse_tables,
    read_csv_file,
    read_table,
    topology_from_records,
)
from outage_sentinel.topology.columns import (
    EdgeList,
    NodeMap,
    NodeTable,
)
from outage_sentinel.topology.index import (
    Forest,
    Topology,
)
from outage_sentinel.topology.model import (
    ALIAS_COLUMNS,
    ALIAS_KINDS,
    AREA_TYPES,
    ASCII_SPACE,
    CARE_TAGS,
    CYCLE_SHOWN,
    DESCRIPTIVE_TAGS,
    DEVICE_KINDS,
    IMPORTANCE,
    KIND_CODE,
    KNOWN_TAGS,
    LIAISON_ROLES,
    METER_COLUMNS,
    NO_TEXTS,
    NO_TRUE,
    NODE_CACHE_SIZE,
    NODE_KINDS,
    OPTIONAL_FILES,
    PROBLEM_CHARS,
    PROTECTIVE_CODES,
    PROTECTIVE_KINDS,
    REQUIRED_COLUMNS,
    SOURCE_CODE,
    TAG_SEPARATORS,
    TRANSFORMER_CODE,
    Alias,
    BoolArray,
    Crew,
    Customer,
    IntArray,
    Liaison,
    Meter,
    Node,
    Problem,
    TopologyError,
    Village,
    clip_list,
    clip_text,
    normalise_tag,
    split_tags,
)

__all__ = [
    "topology_from_records",
    "ALIAS_COLUMNS",
    "ALIAS_KINDS",
    "AREA_TYPES",
    "ASCII_SPACE",
    "Alias",
    "BoolArray",
    "CARE_TAGS",
    "CYCLE_SHOWN",
    "DESCRIPTIVE_TAGS",
    "Crew",
    "Customer",
    "DEVICE_KINDS",
    "EdgeList",
    "Forest",
    "IMPORTANCE",
    "IntArray",
    "KIND_CODE",
    "KNOWN_TAGS",
    "LIAISON_ROLES",
    "Liaison",
    "METER_COLUMNS",
    "Meter",
    "NODE_CACHE_SIZE",
    "NODE_KINDS",
    "NO_TEXTS",
    "NO_TRUE",
    "Node",
    "NodeMap",
    "NodeTable",
    "OPTIONAL_FILES",
    "PROBLEM_CHARS",
    "PROTECTIVE_CODES",
    "PROTECTIVE_KINDS",
    "Problem",
    "REQUIRED_COLUMNS",
    "RawTable",
    "SOURCE_CODE",
    "TAG_SEPARATORS",
    "TRANSFORMER_CODE",
    "Topology",
    "TopologyError",
    "Village",
    "clip_list",
    "clip_text",
    "gc_paused",
    "load_bundle",
    "normalise_tag",
    "parse_tables",
    "read_csv_file",
    "read_table",
    "split_tags",
]
