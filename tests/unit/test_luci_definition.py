"""examples/luci/nat_keepalive.js, LuCI Statistics' graph definition, run under Node with the two
things LuCI gives it (`baseclass.extend`, `_`): it loads, and every type and instance it graphs
is one that `nat-keepalive collectd` sends. LuCI itself is not run here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from natkeepalive.cli.collectd import putval_lines
from tests.support.tools import require_tool

DEFINITION = Path(__file__).resolve().parents[2] / "examples" / "luci" / "nat_keepalive.js"

HARNESS = """
const source = require("fs").readFileSync(process.argv[1], "utf8");
const baseclass = { extend: (o) => o };
const load = new Function("baseclass", "_", source);
const plugin = load(baseclass, (s) => s);
const graphs = plugin.rrdargs(null, "host", "nat_keepalive", "provider", null);
console.log(JSON.stringify({ title: plugin.title, graphs: graphs }));
"""


def test_the_definition_graphs_what_the_command_sends() -> None:
    node = require_tool("node")
    source = DEFINITION.read_text()
    body = source.replace("'use strict';", "").replace("'require baseclass';", "")
    done = subprocess.run(
        [node, "-e", HARNESS, "/dev/stdin"], input=body, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded["title"] == "NAT keepalive"
    sent = {
        line.split("/")[2].split('"')[0]
        for line in putval_lines({"bindings": [{"name": "provider"}]}, "host", 10.0, 0.0)
    }
    graphed: set[str] = set()
    for graph in loaded["graphs"]:
        data = graph["data"]
        for kind, instances in data.get("instances", {}).items():
            graphed |= {f"{kind}-{i}" for i in instances}
        for option in data["options"]:
            kind, _, instance = option.partition("_")
            graphed.add(f"{kind}-{instance}")
    assert graphed == sent
