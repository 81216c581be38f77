"""Debian's node_exporter (textfile collector only) and Prometheus, started on loopback with free
ports and their own temporary directories, for tests that read metrics as users do: by PromQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.helpers import free_port
from tests.support.tools import require_tool


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        data: bytes = reply.read()
        return data


class PromStack:
    """`with PromStack(textfile_dir) as prom: prom.query("up")`; both servers stopped on exit."""

    def __init__(self, textfile_dir: Path, scrape_interval: str = "1s") -> None:
        self.textfile_dir = textfile_dir
        self.scrape_interval = scrape_interval
        self.exporter_bin = require_tool("prometheus-node-exporter")
        self.prometheus_bin = require_tool("prometheus")
        self.tmp = tempfile.TemporaryDirectory(prefix="nk-prom-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exporter_port = free_port(kind=socket.SOCK_STREAM)
        self.port = free_port(kind=socket.SOCK_STREAM)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PromStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        tmp = Path(self.tmp.name)
        # the child keeps its own descriptor of the log: ours is closed at once
        with open(tmp / "exporter.log", "wb") as log:
            self.procs.append(
                subprocess.Popen(
                    [
                        self.exporter_bin,
                        f"--web.listen-address=127.0.0.1:{self.exporter_port}",
                        "--collector.disable-defaults",
                        "--collector.textfile",
                        f"--collector.textfile.directory={self.textfile_dir}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: node\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.exporter_port}']\n"
        )
        with open(tmp / "prometheus.log", "wb") as log:
            self.procs.append(
                subprocess.Popen(
                    [
                        self.prometheus_bin,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--web.enable-lifecycle",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        self.wait_ready(30.0)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args!r} exited: {self.logs()}")
            try:
                http_get(f"{self.url}/-/ready", timeout=1.0)
                http_get(f"http://127.0.0.1:{self.exporter_port}/metrics", timeout=1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {timeout} s: {self.logs()}") from None
                time.sleep(0.2)

    def logs(self) -> str:
        tmp = Path(self.tmp.name)
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(tmp.glob("*.log"))
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [time, "text"]}, ...]."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        answer = json.loads(http_get(url))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of `promql`, or None when the vector is empty."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_value(self, promql: str, expected: float, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        found = None
        while time.monotonic() < deadline:
            found = self.value(promql)
            if found == expected:
                return found
            time.sleep(0.25)
        raise AssertionError(f"{promql}: {found}, not {expected} after {timeout} s")

    def wait_empty(self, promql: str, timeout: float = 20.0) -> None:
        """Until `promql` finds nothing (a series gone from a scrape is stale at once)."""
        deadline = time.monotonic() + timeout
        while self.query(promql):
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} still has {self.query(promql)}")
            time.sleep(0.25)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        self.procs.clear()
        self.tmp.cleanup()
