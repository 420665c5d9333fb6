"""Importers from public network formats to topology bundles.

``import_topology(fmt, src, outdir)`` with ``fmt`` one of ``opendss``, ``glm``,
``pandapower``; see :mod:`outage_sentinel.importers.common` for the rules every importer
follows (service transformers become transformer areas, devices in series, feeder-head
breakers, synthetic villages and liaisons).
"""

from __future__ import annotations

from pathlib import Path

from outage_sentinel.importers.common import (
    BundleInvalidError,
    ImportError_,
    ImportSummary,
    RawNetwork,
    write_bundle,
)

FORMATS = ("opendss", "glm", "pandapower")


def parse(fmt: str, src: str | Path) -> RawNetwork:
    """Read ``src`` in format ``fmt`` into the format-neutral :class:`RawNetwork`."""
    if fmt == "opendss":
        from outage_sentinel.importers import opendss

        return opendss.parse(src)
    if fmt == "glm":
        from outage_sentinel.importers import glm

        return glm.parse(src)
    if fmt == "pandapower":
        from outage_sentinel.importers import pandapower

        return pandapower.parse(src)
    raise ImportError_(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def import_topology(fmt: str, src: str, outdir: str) -> ImportSummary:
    """Parse ``src`` and write a bundle into ``outdir`` (only if it loads: see
    :func:`~outage_sentinel.importers.common.write_bundle`); return what was written."""
    return write_bundle(parse(fmt, src), outdir)


__all__ = ["FORMATS", "BundleInvalidError", "ImportError_", "ImportSummary", "import_topology", "parse"]
