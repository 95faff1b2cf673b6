"""A local Prometheus (Debian's ``prometheus``) that scrapes the model containers' ``/metrics``.

It stands in for Azure Monitor managed Prometheus in the local release: the canary analysis asks it
the same PromQL. Its config and data live under ``<state_dir>/prometheus``; it listens on
127.0.0.1 only and keeps one day of samples. Targets come from a file (``targets.json``,
Prometheus' file service discovery, re-read on change) that the release rewrites atomically as
containers come and go; each target carries the label ``rollouts_pod_template_hash`` (the
container's image id, the local stand-in for Argo Rollouts' pod-template hash), which is how the
analysis tells canary from stable. Scrapes every second so that a local step of a few tens of
seconds has plenty of samples.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from delivery.processes import PidFile, start
from delivery.services import ServiceError, port_open, read_pid, stop_pid
from modelserver.canary.prometheus import PrometheusClient, PrometheusError
from modelship_contract.canary import SELECTOR_LABEL

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
SCRAPE_INTERVAL = "1s"
JOB = "modelship"


class LocalPrometheus:
    """Prometheus on 127.0.0.1:``port`` with its config, data, pid and log under ``state_dir/prometheus``."""

    def __init__(self, state_dir: Path, port: int = 9090):
        if not 1024 <= port <= 65535:
            raise ValueError(f"Prometheus port must be 1024-65535, got {port}")
        self.port = port
        self.root = state_dir / "prometheus"
        self.config_file = self.root / "prometheus.yml"
        self.targets_file = self.root / "targets.json"
        self.pid_file = self.root / "prometheus.pid"
        self.log_file = self.root / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> PrometheusClient:
        return PrometheusClient(self.url)

    def config(self) -> str:
        # JSON is YAML: no YAML library needed to write it.
        return json.dumps({
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [{
                "job_name": JOB,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "5s"}],
            }],
        }, indent=2) + "\n"

    def set_targets(self, targets: Iterable[tuple[int, str]]) -> None:
        """Scrape exactly these ``(port on 127.0.0.1, pod template hash)`` targets from now on."""
        groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {SELECTOR_LABEL: tag}}
                  for port, tag in targets]
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.targets_file.with_name(f".{self.targets_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(groups, indent=2) + "\n")
        os.replace(tmp, self.targets_file)

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def ensure(self, timeout: float = 60.0) -> bool:
        """Start Prometheus unless ours answers; True if it was started now."""
        if self.running_pid() is not None and self.client().ready():
            return False
        if port_open(self.port):
            raise ServiceError(
                f"port {self.port} is taken by another process, so the local Prometheus cannot listen there; "
                "free it or set MODELSHIP_PROMETHEUS_PORT"
            )
        if not PROMETHEUS_BIN.exists():
            raise ServiceError(f"{PROMETHEUS_BIN} is missing: run scripts/bootstrap.sh (apt prometheus)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        if not self.targets_file.exists():
            self.set_targets([])
        try:
            proc = start(
                [str(PROMETHEUS_BIN), f"--config.file={self.config_file}",
                 f"--storage.tsdb.path={self.root / 'data'}", "--storage.tsdb.retention.time=1d",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                self.log_file, lambda: self.client().ready(), f"prometheus on {self.url}", timeout,
                PidFile(self.pid_file),
            )
        except RuntimeError as exc:
            raise ServiceError(str(exc)) from None
        print(f"[local] Prometheus at {self.url} (pid {proc.pid})", flush=True)
        return True

    def wait_scraped(self, tag: str, timeout: float = 60.0) -> None:
        """Wait until the target labelled ``tag`` has been scraped successfully at least once."""
        expr = f'up{{job="{JOB}",{SELECTOR_LABEL}="{tag}"}} == 1'
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().query(expr):
                    return
            except PrometheusError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Prometheus did not scrape the target {SELECTOR_LABEL}={tag} within {timeout:.0f} s "
                    f"({self.url}/targets?search={urllib.parse.quote(tag)})"
                )
            time.sleep(0.2)

    def stop(self) -> bool:
        return stop_pid(self.pid_file, "prometheus")
