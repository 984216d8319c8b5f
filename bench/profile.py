"""A py-spy raw (collapsed-stack) file, summarised: where the worker's time goes.

Each line of the file is `frame;frame;...;leaf COUNT`, a frame `function (path)`. Reported: the
share of samples whose stack passes through each area (Faust, aiokafka, JSON Schema, ...; a
sample counts once per area), and the leaf functions that take the most samples themselves.

    python -m bench.profile /tmp/warm.txt
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

AREAS = {
    "faust (streams, agents, tables)": ("faust/",),
    "mode (Faust's service runtime)": ("mode/",),
    "aiokafka (client, fetch, send)": ("aiokafka/",),
    "asyncio event loop": ("asyncio/",),
    "JSON Schema (jsonschema, referencing)": ("jsonschema", "referencing/"),
    "compiled validator (fastjsonschema/jsonschema_rs)": ("fastjsonschema", "jsonschema_rs"),
    "phonenumbers": ("phonenumbers/",),
    "RocksDB (rocksdict, Faust rocksdb store)": ("rocksdict", "stores/rocksdb"),
    "orjson / json codecs": ("orjson", "serializers/codecs"),
    "prometheus_client": ("prometheus_client/",),
    "stream_app ingest": ("stream_app/ingest/",),
    "stream_app identity": ("stream_app/identity/",),
    "stream_app people/tags/rules": ("stream_app/people/", "stream_app/tags/", "stream_app/rules/"),
    "stream_app worker (agents, adapters)": ("stream_app/worker/",),
}


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(path: Path, top: int = 15) -> str:
    stacks = load(path)
    total = sum(count for _, count in stacks)
    if not total:
        return f"{path}: no samples"
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        joined = ";".join(frames)
        for area, needles in AREAS.items():
            if any(needle in joined for needle in needles):
                areas[area] += count
        leaves[frames[-1]] += count
    out = [f"py-spy: {total:,} samples in {path}", "share of samples through each area (inclusive):"]
    out += [f"  {share / total:6.1%}  {area}" for area, share in areas.most_common()]
    out.append(f"top {top} leaf frames (self):")
    out += [f"  {share / total:6.1%}  {leaf}" for leaf, share in leaves.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
