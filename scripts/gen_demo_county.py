#!/usr/bin/env python3
"""Generate the demo county topology bundle (docs/design.md §3) and the demo replay scenario.

A fictional county, 清河县, fed from three substations (城关变 110kV, 马集变 35kV, 柳河变 35kV)
through 14 radial 10kV feeders. Each feeder is::

    source (substation bus) - breaker - trunk poles (junctions) with reclosers, sectionalizers
    and manual switches in series - branch lines behind drop-out fuses - transformer areas

A few transformer areas hang directly off the trunk, a few big branches have a nested sub-branch
fuse, and normally-open tie switches join the far ends of neighbouring feeders.

Everything comes from one seeded ``random.Random``; rows are written in generation order with
no timestamps, so the same seed always gives byte-identical files.

Usage::

    python scripts/gen_demo_county.py [--seed 20261123] [--out topology]
                                      [--scenario fixtures/scenarios/demo.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SEED = 20261123
ROOT = Path(__file__).resolve().parent.parent

COUNTY = "清河县"
CENTRE_LAT, CENTRE_LON = 36.500, 115.500
KM_LAT = 1 / 111.0
KM_LON = 1 / (111.32 * math.cos(math.radians(CENTRE_LAT)))

# code, name, voltage class, position (km east, km north of the county centre)
SUBSTATIONS = [
    ("CG", "城关变", "110", (0.6, -0.4)),
    ("MJ", "马集变", "35", (13.0, 9.0)),
    ("LH", "柳河变", "35", (-14.0, -8.0)),
]

# feeder id, line name, heading (degrees, 0 = east, counter-clockwise), length km,
# township, number of villages
FEEDERS = [
    ("CG01", "城东线", 15, 4.5, "城东街道", 5),
    ("CG02", "城西线", 175, 4.5, "城西街道", 5),
    ("CG03", "城南线", 280, 5.0, "城南街道", 5),
    ("CG04", "北关线", 95, 9.0, "城关镇", 5),
    ("CG05", "郭庄线", 40, 10.0, "城关镇", 5),
    ("CG06", "前进线", 225, 10.0, "孙庄乡", 6),
    ("MJ01", "马集线", 60, 8.0, "马集镇", 5),
    ("MJ02", "王庄线", 0, 10.0, "王庄乡", 6),
    ("MJ03", "河口线", 165, 10.0, "马集镇", 5),
    ("MJ04", "高庙线", 225, 9.0, "高庙乡", 6),
    ("LH01", "柳河线", 10, 9.0, "柳河镇", 5),
    ("LH02", "北岭线", 80, 10.0, "柳河镇", 5),
    ("LH03", "西山线", 175, 12.0, "西山乡", 6),
    ("LH04", "石门线", 215, 12.0, "西山乡", 6),
]

URBAN_TOWNSHIPS = {
    "城东街道": ["东关社区", "东湖社区", "朝阳社区", "文化路社区", "建设路社区", "迎宾社区"],
    "城西街道": ["西关社区", "人民路社区", "和平社区", "新华社区", "锦绣社区", "西园社区"],
    "城南街道": ["南关社区", "滨河社区", "幸福社区", "育才社区", "光明社区", "振兴社区"],
}
# the township seat (first village of the township's first feeder)
SEATS = {
    "城关镇": "北关村",
    "孙庄乡": "孙庄村",
    "马集镇": "马集村",
    "王庄乡": "王庄村",
    "高庙乡": "高庙村",
    "柳河镇": "柳河村",
    "西山乡": "西山村",
}
MOUNTAIN_VILLAGES = ["石门村", "青龙峪村", "黄崖村", "松树沟村", "柏岭村", "鹰嘴岩村"]
# feeders whose last villages are mountain villages (area_type remote)
REMOTE_TAIL = {"LH03": 2, "LH04": 3}

SURNAMES = list(
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈彭吕苏卢蒋蔡贾丁魏薛叶"
)
VILLAGE_SUFFIXES = [
    "庄", "家庄", "营", "集", "屯", "楼", "店", "寨", "桥", "洼", "口", "官庄", "家坊", "堤",
]
VILLAGE_PREFIXES = ["", "", "", "", "东", "西", "南", "北", "前", "后", "大", "小"]
GIVEN_CHARS = list("秀兰英华玉珍凤芳红霞建国军明伟强磊勇刚平志春海东林立新文杰宏丽敏静桂荣淑云")
CN_NUM = "一二三四五六七八九十"

IMPORTANT_URBAN = [
    ("清河县人民医院", "special", "医疗"),
    ("清河县中医院", "first", "医疗"),
    ("清河县妇幼保健院", "first", "医疗"),
    ("清河县自来水厂", "first", "供水"),
    ("清河县第二水厂加压泵站", "first", "供水"),
    ("清河县污水处理厂", "second", "市政"),
    ("清河县燃气公司门站", "first", "燃气"),
    ("清河县公安局指挥中心", "first", "政府机关"),
    ("清河县消防救援大队", "first", "应急"),
    ("清河县人民政府", "second", "政府机关"),
    ("清河县广播电视发射台", "first", "通信"),
    ("移动清河分公司通信枢纽楼", "first", "通信"),
    ("清河县第一中学", "second", "学校"),
    ("清河县实验小学", "second", "学校"),
]
IMPORTANT_RURAL = [
    ("马集镇", "马集镇卫生院", "second", "医疗"),
    ("马集镇", "马集镇集中供水站", "first", "供水"),
    ("马集镇", "马集镇中心小学", "second", "学校"),
    ("柳河镇", "柳河镇卫生院", "second", "医疗"),
    ("柳河镇", "柳河水库管理所", "second", "防汛"),
    ("王庄乡", "王庄乡卫生院", "second", "医疗"),
    ("高庙乡", "高庙乡敬老院", "second", "养老"),
    ("西山乡", "西山乡中心学校", "second", "学校"),
    ("城关镇", "清河县粮食储备库", "second", "粮食"),
    ("孙庄乡", "孙庄乡农村供水站", "first", "供水"),
]
BUSINESS_KINDS = [
    ("冷库", "cold_storage"),
    ("生猪养殖场", "livestock"),
    ("蛋鸡养殖场", "livestock"),
    ("蔬菜大棚", "greenhouse"),
]
VILLAGE_CHANNELS = [("wecom", 13), ("dingtalk", 3), ("feishu", 1), ("sms", 3)]


@dataclass
class Node:
    id: str
    kind: str
    name: str
    feeder: str
    x: float
    y: float
    normally_open: int = 0
    village: str = ""
    customers: int = 0
    substation: str = ""
    feeder_name: str = ""
    capacity_kva: str = ""


@dataclass
class Village:
    id: str
    name: str
    township: str
    feeder: str
    area_type: str
    x: float
    y: float
    grid: str = ""
    transformers: list[str] = field(default_factory=list)


class Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.villages: list[Village] = []
        self.children: dict[str, list[str]] = {}
        self.feeder_trunk: dict[str, list[str]] = {}
        self.feeder_devices: dict[str, dict[str, list[str]]] = {}
        self.branch_fuses: dict[str, list[str]] = {}
        self.used_village_names: set[str] = set(SEATS.values()) | set(MOUNTAIN_VILLAGES)
        for names in URBAN_TOWNSHIPS.values():
            self.used_village_names.update(names)
        self.used_phones: set[str] = set()
        self.used_person_names: set[str] = set()

    # -- helpers ------------------------------------------------------------------------------

    def add(self, node: Node, parent: str | None) -> str:
        assert node.id not in self.nodes, node.id
        self.nodes[node.id] = node
        self.children[node.id] = []
        if parent is not None:
            self.edges.append((parent, node.id))
            self.children[parent].append(node.id)
        return node.id

    def phone(self) -> str:
        while True:
            prefix = self.rng.choice(["1380000", "1500000", "1860000", "1390000", "1590000"])
            number = f"{prefix}{self.rng.randrange(10000):04d}"
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def person(self) -> str:
        while True:
            given = "".join(self.rng.choice(GIVEN_CHARS) for _ in range(self.rng.choice((1, 2, 2))))
            name = self.rng.choice(SURNAMES) + given
            if name not in self.used_person_names:
                self.used_person_names.add(name)
                return name

    def village_name(self) -> str:
        while True:
            name = (self.rng.choice(VILLAGE_PREFIXES) + self.rng.choice(SURNAMES)
                    + self.rng.choice(VILLAGE_SUFFIXES) + "村")
            if name not in self.used_village_names:
                self.used_village_names.add(name)
                return name

    def weighted(self, options: list[tuple[str, int]]) -> str:
        names = [o for o, _ in options]
        weights = [w for _, w in options]
        return self.rng.choices(names, weights=weights)[0]

    # -- network ------------------------------------------------------------------------------

    def build(self) -> None:
        mountain = list(MOUNTAIN_VILLAGES)
        seats_done: set[str] = set()
        urban_pools = {t: list(n) for t, n in URBAN_TOWNSHIPS.items()}
        sub_by_code = {code: (name, kv, pos) for code, name, kv, pos in SUBSTATIONS}
        dispatch: dict[str, int] = {}
        for fid, line, heading, length, township, n_villages in FEEDERS:
            code = fid[:2]
            sub_name, sub_kv, (sx, sy) = sub_by_code[code]
            dispatch[code] = dispatch.get(code, 910) + 1
            urban = township in URBAN_TOWNSHIPS
            # village list along the feeder, nearest the substation first
            names: list[tuple[str, str]] = []
            for k in range(n_villages):
                if urban:
                    pool = urban_pools[township]
                    names.append((pool.pop(self.rng.randrange(len(pool))), "urban"))
                elif k >= n_villages - REMOTE_TAIL.get(fid, 0):
                    names.append((mountain.pop(0), "remote"))
                elif k == 0 and township not in seats_done:
                    seats_done.add(township)
                    names.append((SEATS[township], "rural"))
                else:
                    names.append((self.village_name(), "rural"))
            self.build_feeder(fid, line, heading, length, township, names,
                              sub_name, sub_kv, (sx, sy), dispatch[code])

    def build_feeder(self, fid: str, line: str, heading: float, length: float, township: str,
                     villages: list[tuple[str, str]], sub_name: str, sub_kv: str,
                     origin: tuple[float, float], dispatch_no: int) -> None:
        rng = self.rng
        ox, oy = origin
        theta = math.radians(heading)
        ux, uy = math.cos(theta), math.sin(theta)
        px, py = -uy, ux  # left-hand normal
        bend = rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.5 else -1)
        waves = rng.uniform(0.6, 1.4)

        def along(d: float, lateral: float = 0.0) -> tuple[float, float]:
            off = bend * math.sin(math.pi * waves * d / length) + lateral
            return ox + ux * d + px * off, oy + uy * d + py * off

        feeder_name = f"10kV{line}"
        src = self.add(Node(f"S-{fid}", "source", f"{sub_name}{feeder_name}出线", fid, ox, oy,
                            substation=sub_name, feeder_name=feeder_name), None)
        self.nodes[src].capacity_kva = ""
        brk = self.add(Node(f"BRK-{fid}", "breaker", f"{line}{dispatch_no}断路器", fid,
                            *along(0.05)), src)
        devices: dict[str, list[str]] = {"breaker": [brk], "recloser": [], "sectionalizer": [],
                                         "switch": [], "fuse": []}
        self.feeder_devices[fid] = devices
        self.branch_fuses[fid] = []

        n_villages = len(villages)
        k_trunk = max(8, 2 * n_villages + rng.randint(-1, 2))
        # trunk pole numbers, strictly increasing
        poles: list[int] = []
        pole = rng.randint(3, 8)
        for _ in range(k_trunk):
            poles.append(pole)
            pole += rng.randint(6, 14)
        # device slots between junction i and i+1 (i = 0 .. k_trunk-2)
        slots = list(range(k_trunk - 1))
        layout: dict[int, str] = {}
        two_reclosers = rng.random() < 0.55
        r1 = round((k_trunk - 1) * 0.3)
        layout[r1] = "recloser"
        if two_reclosers:
            layout[round((k_trunk - 1) * 0.65)] = "recloser"
        free = [s for s in slots if s not in layout and s > 0]
        rng.shuffle(free)
        extra = rng.sample(["sectionalizer", "switch", "", ""], 2)
        for kind in ["sectionalizer", "switch", *extra]:
            if free and kind:
                layout[free.pop()] = kind
        # lay the trunk
        trunk: list[str] = []
        prev = brk
        counters = {"recloser": 0, "sectionalizer": 0, "switch": 0}
        prefixes = {"recloser": "RC", "sectionalizer": "SEC", "switch": "SW"}
        labels = {"recloser": "柱上重合器", "sectionalizer": "分段器", "switch": "分段负荷开关"}
        for i in range(k_trunk):
            d = length * (i + 1) / k_trunk
            jid = self.add(Node(f"J-{fid}-{i + 1:02d}", "junction", f"{line}#{poles[i]}杆", fid,
                                *along(d)), prev)
            trunk.append(jid)
            prev = jid
            kind = layout.get(i)
            if kind and i < k_trunk - 1:
                counters[kind] += 1
                dpole = (poles[i] + poles[i + 1]) // 2
                did = self.add(Node(f"{prefixes[kind]}-{fid}-{counters[kind]}", kind,
                                    f"{line}#{dpole}杆{labels[kind]}", fid,
                                    *along(length * (i + 1.5) / k_trunk)), prev)
                devices[kind].append(did)
                prev = did
        self.feeder_trunk[fid] = trunk

        # villages: spread over trunk junctions (never the first pole out of the substation)
        spots = sorted(rng.sample(range(1, k_trunk), n_villages))
        tx_seq = [0]
        branch_seq = [0]
        for (vname, area), spot in zip(villages, spots, strict=True):
            vid = f"V{len(self.villages) + 1:03d}"
            d = length * (spot + 1) / k_trunk
            side = 1 if rng.random() < 0.5 else -1
            vx, vy = along(d, side * rng.uniform(0.6, 1.5))
            village = Village(vid, vname, township, fid, area, vx, vy)
            self.villages.append(village)
            if area == "urban":
                n_tx = rng.randint(4, 7)
            elif area == "remote":
                n_tx = rng.randint(2, 3)
            elif vname in SEATS.values():
                n_tx = rng.randint(7, 9)
            else:
                n_tx = rng.choice([2, 3, 3, 4, 4, 5, 5, 6, 7, 8])
            style = "号台区" if area == "urban" or rng.random() < 0.6 else "#公变"
            self.build_village(fid, line, trunk[spot], village, n_tx, style, side, along, d,
                               tx_seq, branch_seq)

    def new_transformer(self, fid: str, village: Village, style: str, parent: str,
                        x: float, y: float, tx_seq: list[int]) -> str:
        rng = self.rng
        tx_seq[0] += 1
        k = len(village.transformers) + 1
        if village.area_type == "urban":
            customers = rng.randint(110, 300)
        elif village.area_type == "remote":
            customers = rng.randint(20, 60)
        else:
            customers = max(20, min(260, int(rng.triangular(25, 220, 85))))
        capacity = next(c for c, limit in ((100, 40), (200, 90), (315, 150), (400, 220),
                                           (630, 10**9)) if customers <= limit)
        tid = self.add(Node(f"T-{fid}-{tx_seq[0]:03d}", "transformer", f"{village.name}{k}{style}",
                            fid, x, y, village=village.id, customers=customers,
                            capacity_kva=str(capacity)), parent)
        village.transformers.append(tid)
        return tid

    def build_village(self, fid: str, line: str, tap: str, village: Village, n_tx: int,
                      style: str, side: int, along, d: float, tx_seq: list[int],
                      branch_seq: list[int]) -> None:
        rng = self.rng
        # a few transformer areas straight off the trunk pole
        on_trunk = 0
        if n_tx <= 3 and village.area_type != "remote" and rng.random() < 0.25:
            on_trunk = n_tx
        elif n_tx >= 3 and rng.random() < 0.5:
            on_trunk = 1
        for _ in range(on_trunk):
            x, y = along(d + rng.uniform(-0.15, 0.15), side * rng.uniform(0.1, 0.3))
            self.new_transformer(fid, village, style, tap, x, y, tx_seq)
        rest = n_tx - on_trunk
        if rest <= 0:
            return
        sizes = [rest] if rest < 7 or rng.random() < 0.4 else [rest // 2 + rest % 2, rest // 2]
        short = village.name[:-2] if village.name.endswith(("社区",)) else village.name[:-1]
        for b, size in enumerate(sizes):
            branch_seq[0] += 1
            bno = branch_seq[0]
            bname = f"{short}{'' if b == 0 else CN_NUM[b]}支线"
            bside = side if b == 0 else -side
            parent = tap
            if rng.random() < 0.15:
                parent = self.add(Node(f"SW-{fid}-B{bno:02d}", "switch", f"{bname}隔离开关", fid,
                                       *along(d, bside * 0.05)), parent)
                self.feeder_devices[fid]["switch"].append(parent)
            fuse = self.add(Node(f"FU-{fid}-{bno:02d}", "fuse", f"{bname}跌落式熔断器", fid,
                                 *along(d, bside * 0.08)), parent)
            self.feeder_devices[fid]["fuse"].append(fuse)
            self.branch_fuses[fid].append(fuse)
            nested = size >= 6 and rng.random() < 0.35
            main = size - (rng.randint(2, 3) if nested else 0)
            parent = fuse
            step = rng.uniform(0.25, 0.45)
            lateral = 0.1
            j = 0
            placed = 0
            while placed < main:
                j += 1
                lateral += step
                jid = self.add(Node(f"J-{fid}-B{bno:02d}-{j}", "junction", f"{bname}#{j * 3}杆",
                                    fid, *along(d + rng.uniform(-0.1, 0.1), bside * lateral)),
                               parent)
                parent = jid
                for _ in range(min(main - placed, rng.choice((1, 2, 2)))):
                    x, y = along(d + rng.uniform(-0.2, 0.2),
                                 bside * (lateral + rng.uniform(0.02, 0.1)))
                    self.new_transformer(fid, village, style, jid, x, y, tx_seq)
                    placed += 1
            if nested:
                sub = self.add(Node(f"FU-{fid}-{bno:02d}-1", "fuse", f"{bname}分支跌落式熔断器",
                                    fid, *along(d + 0.2, bside * lateral)), parent)
                self.feeder_devices[fid]["fuse"].append(sub)
                sj = self.add(Node(f"J-{fid}-B{bno:02d}-S1", "junction", f"{bname}分支#1杆", fid,
                                   *along(d + 0.4, bside * lateral)), sub)
                for _ in range(size - main):
                    x, y = along(d + rng.uniform(0.4, 0.7),
                                 bside * (lateral + rng.uniform(-0.2, 0.2)))
                    self.new_transformer(fid, village, style, sj, x, y, tx_seq)

    def add_ties(self, count: int = 7) -> None:
        """Normally-open tie switches between the far halves of the closest feeder pairs."""
        fids = [f[0] for f in FEEDERS]
        candidates = []
        for ai, a in enumerate(fids):
            for b in fids[ai + 1:]:
                ta = self.feeder_trunk[a][len(self.feeder_trunk[a]) // 2:]
                tb = self.feeder_trunk[b][len(self.feeder_trunk[b]) // 2:]
                best = min((self.dist(x, y), x, y) for x in ta for y in tb)
                candidates.append((round(best[0], 6), a, b, best[1], best[2]))
        candidates.sort()
        used: dict[str, int] = {}
        lines = {f[0]: f[1] for f in FEEDERS}
        made = 0
        for _dist, a, b, ja, jb in candidates:
            if made >= count:
                break
            if used.get(a, 0) >= 2 or used.get(b, 0) >= 2:
                continue
            made += 1
            used[a] = used.get(a, 0) + 1
            used[b] = used.get(b, 0) + 1
            na, nb = self.nodes[ja], self.nodes[jb]
            tie = self.add(Node(f"TIE-{made:02d}", "switch", f"{lines[a]}-{lines[b]}联络开关", a,
                                (na.x + nb.x) / 2, (na.y + nb.y) / 2, normally_open=1), None)
            self.edges.append((ja, tie))
            self.edges.append((tie, jb))

    def dist(self, a: str, b: str) -> float:
        na, nb = self.nodes[a], self.nodes[b]
        return math.hypot(na.x - nb.x, na.y - nb.y)

    def downstream_tx(self, nid: str) -> list[str]:
        out, stack = [], [nid]
        while stack:
            v = stack.pop()
            if self.nodes[v].kind == "transformer":
                out.append(v)
            stack.extend(reversed(self.children[v]))
        return out

    # -- people -------------------------------------------------------------------------------

    def assign_grids(self) -> None:
        by_township: dict[str, list[Village]] = {}
        for v in self.villages:
            by_township.setdefault(v.township, []).append(v)
        for township, vs in by_township.items():
            n_grids = max(1, math.ceil(len(vs) / 4))
            for i, v in enumerate(vs):
                g = i * n_grids // len(vs)
                v.grid = f"{township}第{CN_NUM[g]}网格"

    def liaisons(self) -> list[dict[str, str]]:
        rng = self.rng
        rows: list[dict[str, str]] = []
        grid_managers: dict[str, dict[str, str]] = {}
        tx_managers: dict[str, tuple[dict[str, str], int]] = {}
        for v in self.villages:
            # village liaison
            channel = self.weighted(VILLAGE_CHANNELS)
            phone = self.phone()
            title = (rng.choice(["社区居委会主任", "社区网格员"]) if v.area_type == "urban"
                     else rng.choice(["村委会主任", "村党支部书记", "村委会委员", "村电工"]))
            rows.append({"village": v.id, "name": self.person(), "role": "village_liaison",
                         "phone": phone, "channel": channel,
                         "target": phone if channel == "sms" else f"{v.name}停电通知群",
                         "title": title})
            # grid manager, shared by the villages of a grid
            if v.grid not in grid_managers:
                channel = self.weighted([("wecom", 5), ("dingtalk", 1), ("sms", 1)])
                phone = self.phone()
                grid_managers[v.grid] = {
                    "name": self.person(), "phone": phone, "channel": channel,
                    "target": phone if channel == "sms" else f"{v.grid}供电服务群",
                }
            gm = grid_managers[v.grid]
            rows.append({"village": v.id, "name": gm["name"], "role": "grid_manager",
                         "phone": gm["phone"], "channel": gm["channel"], "target": gm["target"],
                         "title": "网格经理"})
            # transformer-area manager, shared by up to three neighbouring villages of a grid
            tm, served = tx_managers.get(v.grid, (None, 0))
            if tm is None or served >= rng.choice((2, 3)):
                channel = self.weighted([("wecom", 3), ("sms", 2)])
                phone = self.phone()
                person = self.person()
                tm = {"name": person, "phone": phone, "channel": channel,
                      "target": phone if channel == "sms" else f"{v.grid}台区经理群"}
                served = 0
            tx_managers[v.grid] = (tm, served + 1)
            rows.append({"village": v.id, "name": tm["name"], "role": "transformer_manager",
                         "phone": tm["phone"], "channel": tm["channel"], "target": tm["target"],
                         "title": "台区经理"})
        return rows

    def crews(self) -> list[dict[str, str]]:
        spec = [
            ("CR01", "城关供电所抢修一班", "城关供电所", ["CG01", "CG02", "CG03"], "wecom"),
            ("CR02", "城关供电所抢修二班", "城关供电所", ["CG04", "CG05", "CG06"], "sms"),
            ("CR03", "马集供电所抢修班", "马集供电所", ["MJ01", "MJ03"], "wecom"),
            ("CR04", "王庄供电所抢修班", "王庄供电所", ["MJ02", "MJ04", "CG05"], "wecom"),
            ("CR05", "柳河供电所抢修班", "柳河供电所", ["LH01", "LH02", "CG06"], "sms"),
            ("CR06", "西山供电所抢修班", "西山供电所", ["LH03", "LH04"], "wecom"),
        ]
        rows = []
        for cid, name, base, feeders, channel in spec:
            # crew base near the feeder heads it covers
            heads = [self.nodes[f"S-{f}"] for f in feeders]
            x = sum(h.x for h in heads) / len(heads) + self.rng.uniform(-0.8, 0.8)
            y = sum(h.y for h in heads) / len(heads) + self.rng.uniform(-0.8, 0.8)
            lat, lon = self.latlon(x, y)
            phone = self.phone()
            rows.append({"id": cid, "name": name, "phone": phone, "channel": channel,
                         "target": phone if channel == "sms" else f"{name}工作群",
                         "feeders": ";".join(feeders), "lat": lat, "lon": lon, "base": base,
                         "leader": self.person()})
        return rows

    def customers(self) -> list[dict[str, str]]:
        rng = self.rng
        rows: list[dict[str, str]] = []
        seq = [0]
        taken: set[str] = set()

        def add(tx: str, name: str, importance: str, tags: list[str], category: str,
                note: str) -> None:
            seq[0] += 1
            rows.append({"id": f"C{seq[0]:05d}", "transformer": tx, "name": name,
                         "phone": self.phone(), "importance": importance, "tags": ";".join(tags),
                         "category": category, "note": note})

        urban_tx = [t for v in self.villages if v.area_type == "urban" for t in v.transformers]
        for name, importance, category in IMPORTANT_URBAN:
            tx = rng.choice([t for t in urban_tx if t not in taken])
            taken.add(tx)
            add(tx, name, importance, [], category, "重要用户，停电须立即报告")
        seat_of = {v.township: v for v in self.villages if v.name in SEATS.values()}
        for township, name, importance, category in IMPORTANT_RURAL:
            v = seat_of[township]
            tx = rng.choice([t for t in v.transformers if t not in taken])
            taken.add(tx)
            add(tx, name, importance, [], category, "重要用户，停电须立即报告")

        all_tx = [t for v in self.villages for t in v.transformers]
        notes = {
            "life_support": ["居家使用制氧机", "居家使用呼吸机", "居家腹膜透析"],
            "elderly_alone": ["独居老人", "独居老人，行动不便", "空巢老人，听力不好请电话告知"],
        }
        for _ in range(64):
            roll = rng.random()
            tags = (["life_support"] if roll < 0.25 else
                    ["life_support", "elderly_alone"] if roll < 0.33 else ["elderly_alone"])
            note = "；".join(rng.choice(notes[t]) for t in tags)
            add(rng.choice(all_tx), self.person(), "", tags, "特殊关爱户", note)

        rural_tx = [t for v in self.villages if v.area_type != "urban" for t in v.transformers]
        village_name = {v.id: v.name for v in self.villages}
        for _ in range(36):
            label, tag = rng.choice(BUSINESS_KINDS)
            tx = rng.choice(rural_tx)
            add(tx, f"{village_name[self.nodes[tx].village]}{self.person()}{label}", "", [tag],
                "农业生产", "停电影响生产，请提前告知")
        for _ in range(190):
            add(rng.choice(all_tx), self.person(), "", [], "居民", "停电短信订阅")
        return rows

    # -- output -------------------------------------------------------------------------------

    def latlon(self, x: float, y: float) -> tuple[str, str]:
        return f"{CENTRE_LAT + y * KM_LAT:.6f}", f"{CENTRE_LON + x * KM_LON:.6f}"

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        node_rows = []
        for n in self.nodes.values():
            lat, lon = self.latlon(n.x, n.y)
            node_rows.append({
                "id": n.id, "kind": n.kind, "name": n.name, "feeder": n.feeder,
                "normally_open": str(n.normally_open), "village": n.village,
                "customers": str(n.customers) if n.kind == "transformer" else "",
                "lat": lat, "lon": lon, "substation": n.substation, "feeder_name": n.feeder_name,
                "capacity_kva": n.capacity_kva,
            })
        write_csv(out / "nodes.csv", node_rows)
        write_csv(out / "edges.csv", [{"from": a, "to": b} for a, b in self.edges])
        village_rows = []
        for v in self.villages:
            lat, lon = self.latlon(v.x, v.y)
            village_rows.append({"id": v.id, "name": v.name, "township": v.township,
                                 "grid": v.grid, "area_type": v.area_type, "county": COUNTY,
                                 "feeder": v.feeder, "lat": lat, "lon": lon})
        write_csv(out / "villages.csv", village_rows)
        write_csv(out / "liaisons.csv", self.liaisons())
        write_csv(out / "crews.csv", self.crews())
        write_csv(out / "customers.csv", self.customers())
        meter_rows = []
        for n in self.nodes.values():
            if n.kind != "transformer":
                continue
            meter_rows.append({"id": f"TM-{n.id}", "transformer": n.id, "kind": "terminal"})
            for k in range(min(30, max(1, round(n.customers / 10)))):
                meter_rows.append({"id": f"M-{n.id}-{k + 1:03d}", "transformer": n.id,
                                   "kind": "meter"})
        write_csv(out / "meters.csv", meter_rows)

    # -- demo scenario ------------------------------------------------------------------------

    def area_text(self, transformers: list[str]) -> str:
        seen: list[Village] = []
        by_id = {v.id: v for v in self.villages}
        for t in transformers:
            v = by_id[self.nodes[t].village]
            if v not in seen:
                seen.append(v)
        names = "、".join(v.name for v in seen[:3])
        more = f"等{len(seen)}个村（社区）" if len(seen) > 3 else ""
        return f"{seen[0].township}{names}{more}部分区域"

    def scenario(self) -> list[dict[str, object]]:
        lines = {f[0]: f[1] for f in FEEDERS}

        def clean_fuses(fid: str) -> list[str]:
            # branch fuses with no nested protective device and at least six areas below
            out = []
            for fu in self.branch_fuses[fid]:
                below = self.downstream_tx(fu)
                if len(below) >= 6 and f"{fu}-1" not in self.nodes:
                    out.append(fu)
            return out

        fuse_feeder = next(f for f in ["MJ02", "MJ04", "CG05", "CG06", "LH01", "MJ01", "CG04"]
                           + [f[0] for f in FEEDERS] if clean_fuses(f))
        fuse = max(clean_fuses(fuse_feeder), key=lambda fu: (len(self.downstream_tx(fu)), fu))
        fuse_tx = self.downstream_tx(fuse)
        first = fuse_tx[:4]

        # prefer a feeder with two reclosers (the second one cuts off a short tail)
        order = ["LH01", "LH02", "LH03", "MJ03", "MJ01", "CG04"] + [f[0] for f in FEEDERS]
        rc_feeder = next((f for f in order
                          if f != fuse_feeder and len(self.feeder_devices[f]["recloser"]) >= 2),
                         next(f for f in order
                              if f != fuse_feeder and self.feeder_devices[f]["recloser"]))
        recloser = self.feeder_devices[rc_feeder]["recloser"][-1]
        rc_tx = self.downstream_tx(recloser)

        plan_feeder = next(f for f in ["CG05", "MJ04", "CG04"] + [f[0] for f in FEEDERS]
                           if f not in (fuse_feeder, rc_feeder)
                           and any(s.startswith("SW-") and "-B" not in s
                                   for s in self.feeder_devices[f]["switch"]))
        switch = [s for s in self.feeder_devices[plan_feeder]["switch"] if "-B" not in s][-1]
        plan_tx = self.downstream_tx(switch)

        def event(at, eid, kind, status, start, etr, feeder, device, txs, area, cause):
            return {"at": at, "event_id": eid, "kind": kind, "status": status,
                    "start_offset": start, "etr_offset": etr, "feeder": feeder, "device": device,
                    "transformers": sorted(txs), "area_text": area, "cause": cause}

        e1, e2, e3 = "DEMO-F001", "DEMO-F002", "DEMO-P001"
        return [
            event(0, e1, "fault", "active", -180, None, fuse_feeder, None, first,
                  self.area_text(first), "10kV" + lines[fuse_feeder] + "线路故障，正在排查"),
            event(20, e1, "fault", "active", -180, 7200, fuse_feeder, None, fuse_tx,
                  self.area_text(fuse_tx), "大风导致树线矛盾，支线熔断器熔断，抢修人员已到场"),
            event(40, e2, "fault", "active", 30, 5400, rc_feeder, recloser, rc_tx,
                  self.area_text(rc_tx),
                  "10kV" + lines[rc_feeder] + "重合器跳闸，线路故障，正在排查"),
            event(60, e1, "fault", "restored", -180, 7200, fuse_feeder, None, fuse_tx,
                  self.area_text(fuse_tx), "大风导致树线矛盾，已处理完毕恢复送电"),
            event(80, e3, "planned", "active", 86400, 86400 + 4 * 3600, plan_feeder, switch,
                  plan_tx, self.area_text(plan_tx),
                  "计划检修：10kV" + lines[plan_feeder] + "线路改造及设备消缺"),
            event(100, e2, "fault", "restored", 30, 5400, rc_feeder, recloser, rc_tx,
                  self.area_text(rc_tx), "鸟害导致线路瞬时接地，已巡视处理恢复送电"),
        ]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(seed: int, out: Path, scenario: Path | None) -> Builder:
    b = Builder(seed)
    b.build()
    b.add_ties()
    b.assign_grids()
    b.write(out)
    if scenario is not None:
        scenario.parent.mkdir(parents=True, exist_ok=True)
        with scenario.open("w", encoding="utf-8", newline="") as fh:
            for row in b.scenario():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "topology")
    parser.add_argument("--scenario", type=Path, default=ROOT / "fixtures/scenarios/demo.jsonl",
                        help="where to write the demo replay scenario")
    parser.add_argument("--no-scenario", action="store_true", help="do not write the scenario")
    args = parser.parse_args(argv)
    b = generate(args.seed, args.out, None if args.no_scenario else args.scenario)
    n_tx = sum(1 for n in b.nodes.values() if n.kind == "transformer")
    print(f"wrote {args.out}: {len(b.nodes)} nodes, {n_tx} transformer areas, "
          f"{len(b.villages)} villages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
