"""Fuzz the config loader and the topology bundle reader at their entry points.

Only the documented errors may escape: :class:`ConfigError` (every problem naming a line, a
key path, ``<file>`` or ``<root>``, never a value read from the environment) and
:class:`TopologyError` (every problem naming a bundle file). A config that loads must be one
the daemon can start: every duration fits ``datetime`` arithmetic.

The case runners (:func:`run_config_case`, :func:`run_bundle_case`) and the strategies
(:func:`config_texts`, :func:`config_documents`, :func:`bundle_mutations`) are plain functions
so a longer fuzz run (``benchmarks/``) can drive them with many more inputs.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from outage_sentinel import logs
from outage_sentinel.config import Config, ConfigError, load_config
from outage_sentinel.topology import REQUIRED_COLUMNS, TopologyError, load_bundle

SECRETS = {"HOOK_KEY": "hk-9f8e7d6c5b4a", "TOKEN": "tok/with space+", "SHORT": "zq1"}

BASE_CONFIG = """\
state_dir: state
topology: topo
sources:
  - name: feed
    type: http_json
    url: "https://feed.invalid/list?key=${HOOK_KEY}"
    preset: 95598_list
    interval_seconds: 60
    headers: {Authorization: "Bearer ${TOKEN}"}
  - name: demo
    type: replay
    scenario: scenarios/demo.jsonl
channels:
  hook:
    type: webhook
    url: "http://127.0.0.1:9/hook/{target}?key=${HOOK_KEY}"
  wecom:
    type: wecom
    robots: {group-1: {key: "${TOKEN}"}}
correlation: {window_minutes: 30}
delivery: {interval_seconds: 2, retry: {initial_seconds: 2, max_age_seconds: 21600}}
"""

# Where a problem points: a YAML position, the file, the root, or a key path (keys are the
# user's own text, so any non-empty text before ": "), then what is wrong.
WHERE = re.compile(r"^(line \d+, column \d+|<file>|<root>|\S[^\n]*?): \S")

SCALARS = st.one_of(
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e400", "-1e400", "1e300", ".inf", ".nan", "0", "-1", "", "~", "null",
                     "${HOOK_KEY}", "${TOKEN}", "${SHORT}", "${NOPE}", "${NOPE:-x}",
                     "http://h/${HOOK_KEY}", "2026-02-30", "yes", "[]", "{}", "*a", "&a x"]),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)
KEYS = st.sampled_from([
    "type", "name", "url", "interval_seconds", "window_minutes", "timezone", "robots", "key",
    "sources", "channels", "port", "retry", "multiplier", "max_age_seconds", "reminder_hours",
    "templates_dir", "batch_size", "speed_kmh", "rural", "preset", "headers", "extra"])


def config_documents() -> st.SearchStrategy[Any]:
    """Base config dicts with random keys replaced, added or deleted at random depths."""
    values = st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)

    @st.composite
    def mutated(draw: st.DrawFn) -> Any:
        doc = yaml.safe_load(BASE_CONFIG)
        for _ in range(draw(st.integers(1, 4))):
            node: Any = doc
            for _depth in range(draw(st.integers(0, 3))):
                if isinstance(node, dict) and node:
                    child = node[draw(st.sampled_from(sorted(node, key=str)))]
                elif isinstance(node, list) and node:
                    child = node[draw(st.integers(0, len(node) - 1))]
                else:
                    break
                if not isinstance(child, dict | list):
                    break
                node = child
            if isinstance(node, dict):
                key = draw(st.one_of(KEYS, st.sampled_from(sorted(node, key=str) or ["x"])))
                if draw(st.booleans()) or key not in node:
                    node[key] = draw(values)
                else:
                    del node[key]
            elif isinstance(node, list):
                node.append(draw(values))
        return doc

    return mutated()


def config_texts() -> st.SearchStrategy[bytes]:
    """YAML-ish bytes: the base config with random text spliced in (anchors, aliases, bad
    bytes, tabs, quotes, deep brackets), or a dumped random document."""
    fragments = st.sampled_from([
        b"&a ", b"*a", b"[*a]", b"{", b"}", b"[", b"]", b'"', b"'", b"\t", b"\xff", b"\xc3",
        b"\x00", b": ", b"\n  - ", b"!!python/object:os.system ", b"<<: *a\n", b"%YAML 1.1\n",
        b"---\n", b"...\n", b"? ", b"${HOOK_KEY}", b"1e400", b"[" * 200, b"\r", b"\xef\xbb\xbf"])

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        data = bytearray(BASE_CONFIG.encode())
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            piece = draw(st.one_of(fragments, st.binary(max_size=8)))
            cut = draw(st.integers(0, 8))
            data[at:at + cut] = piece
        return bytes(data)

    dumped = config_documents().map(
        lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8"))
    return st.one_of(spliced(), dumped)


def _durations_fit(model: BaseModel) -> None:
    """Every ``*_seconds``/``*_minutes``/``*_hours`` value fits datetime arithmetic."""
    now = datetime.now(UTC)
    units = {"_seconds": "seconds", "_minutes": "minutes", "_hours": "hours"}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _durations_fit(value)
        elif isinstance(value, list | tuple | dict):
            for item in value.values() if isinstance(value, dict) else value:
                if isinstance(item, BaseModel):
                    _durations_fit(item)
        for suffix, unit in units.items():
            if name.endswith(suffix) and isinstance(value, int | float):
                delta = timedelta(**{unit: value})
                assert now - delta <= now + delta
    for hours in getattr(model, "reminder_hours", ()):
        assert now - timedelta(hours=hours) <= now


def run_config_case(text: bytes, env: Mapping[str, str] = SECRETS) -> Config | None:
    """Load ``text`` as a config file; raise AssertionError on an undocumented outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(text)
        try:
            config = load_config(path, env=env)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError must list its problems"
            for problem in exc.problems:
                assert WHERE.match(problem), f"problem without a place: {problem!r}"
            shown = str(exc)
            for value in env.values():
                assert f"'{value}'" not in shown, f"an ${'{ENV}'} value in {shown!r}"
                assert len(value) < 4 or value not in shown, f"a secret in {shown!r}"
            return None
    _durations_fit(config)
    return config


def run_bundle_case(files: Mapping[str, bytes | None]) -> None:
    """Write a bundle (None = make that file a directory) and load it; only TopologyError with
    problems naming bundle files may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            if data is None:
                (root / name).mkdir()
            else:
                (root / name).write_bytes(data)
        try:
            load_bundle(root)
        except TopologyError as exc:
            assert exc.problems
            for p in exc.problems:
                assert p.file in KNOWN_FILES or p.file == str(root), p
                assert len(str(p)) < 5000, "problem text not clipped"


KNOWN_FILES = {*REQUIRED_COLUMNS, "meters.csv", "customers.csv"}

SMALL_BUNDLE = {
    "nodes.csv": "id,kind,name,feeder,normally_open,village,customers,lat,lon\n"
                 "S1,source,变电站,F1,0,,0,,\nB1,breaker,断路器,F1,0,,0,,\n"
                 "FU1,fuse,熔断器,F1,0,,0,36.5,115.5\nT1,transformer,台区1,F1,0,V1,40,,\n"
                 "T2,transformer,台区2,F1,0,V2,30,,\nSW1,switch,联络,F1,1,,0,,\n",
    "edges.csv": "from,to\nS1,B1\nB1,FU1\nFU1,T1\nFU1,T2\nT2,SW1\n",
    "villages.csv": "id,name,township,grid,area_type\nV1,东村,镇,g1,rural\nV2,西村,镇,g1,urban\n",
    "liaisons.csv": "village,name,role,phone,channel,target\n"
                    "V1,张三,village_liaison,13800000001,wecom,group-1\n"
                    "V2,李四,grid_manager,13800000002,sms,\n",
    "crews.csv": "id,name,phone,channel,target,feeders\nCR1,一班,13900000001,wecom,crew-1,F1\n",
    "customers.csv": "id,transformer,name,phone,importance,tags\n"
                     "C1,T1,医院,13700000001,special,life_support\n",
}


def bundle_mutations() -> st.SearchStrategy[dict[str, bytes | None]]:
    """The small valid bundle with one to three files mutated: random bytes spliced in, a
    file truncated, emptied, deleted, made a directory, re-encoded, CR-only line endings."""
    names = sorted(SMALL_BUNDLE)
    pieces = st.sampled_from([b",", b'"', b"\n", b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf",
                              b",,,,", b"S1", b"T1", b"FU1", b"V1", b"1", b"-1", b"1e400",
                              b"nan", b"source", b"transformer", b'"a\nb"', b" "])

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, bytes | None]:
        files: dict[str, bytes | None] = {k: v.encode("utf-8") for k, v in SMALL_BUNDLE.items()}
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(names))
            data = files.get(name) or b""
            op = draw(st.sampled_from(["splice", "splice", "splice", "truncate", "empty",
                                       "delete", "directory", "gbk", "cr", "duplicate"]))
            if op == "splice":
                buf = bytearray(data)
                for _ in range(draw(st.integers(1, 5))):
                    at = draw(st.integers(0, len(buf)))
                    buf[at:at + draw(st.integers(0, 4))] = draw(
                        st.one_of(pieces, st.binary(max_size=6)))
                files[name] = bytes(buf)
            elif op == "truncate":
                files[name] = data[:draw(st.integers(0, len(data)))]
            elif op == "empty":
                files[name] = b""
            elif op == "delete":
                files.pop(name, None)
            elif op == "directory":
                files[name] = None
            elif op == "gbk":
                files[name] = data.decode("utf-8", "replace").encode("gbk", "replace")
            elif op == "cr":
                files[name] = data.replace(b"\n", b"\r")
            else:
                files[name] = data + data.split(b"\n", 1)[-1]
        return files

    return mutated()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_texts())
def test_config_texts_give_only_config_errors(text: bytes) -> None:
    try:
        run_config_case(text)
    finally:
        logs.reset_secrets()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_documents())
def test_config_documents_give_only_config_errors(doc: Any) -> None:
    try:
        run_config_case(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))
    finally:
        logs.reset_secrets()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundle_mutations())
def test_bundle_mutations_give_only_topology_errors(files: dict[str, bytes | None]) -> None:
    run_bundle_case(files)


def test_the_unmutated_inputs_are_valid() -> None:
    """The fuzzers start from good inputs, so what they find is caused by the mutation."""
    try:
        assert run_config_case(BASE_CONFIG.encode()) is not None
    finally:
        logs.reset_secrets()
    run_bundle_case({k: v.encode() for k, v in SMALL_BUNDLE.items()})
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in SMALL_BUNDLE.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        assert load_bundle(tmp).stats()["transformer_areas"] == 2
