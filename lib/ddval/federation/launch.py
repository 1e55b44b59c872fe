"""A SuperLink and SuperNodes as separate processes on this machine, and ``flwr run`` against them.

What a hospital's IT runs is three Flower commands (``README.md``, "Run a real federation"); this
module runs exactly those commands on 127.0.0.1 for the tests, the benchmark and ``ddval federate
local``. With ``tls=True`` (the default) the SuperLink serves HTTPS with a certificate of a local CA
(:mod:`ddval.federation.certs`), every SuperNode and the CLI verify it, and only SuperNodes whose
public key was registered (``flwr supernode register``) may connect; ``tls=False`` is the insecure
loopback mode, for tests only. Every process binds to 127.0.0.1, runs with Flower's telemetry off and
installs nothing at run time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ddval.federation.certs import ServerCertificates, make_node_keys, make_server_certificates

#: The ddval Flower app (``flwr run`` builds its bundle from this folder).
APP_DIR = Path(__file__).with_name("flower_app")
CONNECTION = "ddval"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(home: Path) -> dict[str, str]:
    """Environment of every Flower process: this interpreter's scripts first on ``PATH`` (the
    SuperLink and SuperNodes start ``flower-superexec`` / ``flwr-clientapp`` by name), the Flower
    home of this federation, telemetry off, progress bars off."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLWR_HOME"] = str(home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env.setdefault("DDVAL_PROGRESS", "off")
    return env


def run_command(run_config: dict) -> list[str]:
    """``flwr run <ddval app> ddval --run-config '<k>=<v> ...' --stream`` (TOML values)."""
    overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
    return ["flwr", "run", str(APP_DIR), CONNECTION, "--run-config", overrides, "--stream"]


@dataclass
class LocalFederation:
    """A SuperLink and one SuperNode per data root, started by :meth:`start`, stopped by :meth:`stop`.

    Attributes:
        workdir: logs, Flower home, certificates and keys.
        data_roots: institution → its data root (one SuperNode each).
        tls: HTTPS with a local CA and SuperNode authentication; ``False``: insecure loopback.
    """

    workdir: Path
    data_roots: dict[str, Path]
    tls: bool = True
    port: int = field(default_factory=free_port)
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)
    superlink: subprocess.Popen | None = None
    certs: ServerCertificates | None = None

    @property
    def home(self) -> Path:
        return self.workdir / "flwr-home"

    @property
    def env(self) -> dict[str, str]:
        return flower_env(self.home)

    #: Flower's simulation runtime instead of SuperNodes: that many virtual nodes in this process tree
    simulate: int = 0

    def start(self, timeout: float = 120.0) -> LocalFederation:
        """Start the SuperLink, register the sites' keys (TLS mode), start every SuperNode (none when
        simulating: the SuperLink runs the ClientApps of ``simulate`` virtual nodes itself)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.certs = make_server_certificates(self.workdir / "certs")
        self._write_connection()
        tls_args = (
            [
                "--ssl-certfile",
                str(self.certs.server_cert),
                "--ssl-keyfile",
                str(self.certs.server_key),
                "--ssl-ca-certfile",
                str(self.certs.ca_cert),
                "--enable-supernode-auth",
            ]
            if self.certs
            else ["--insecure"]
        )
        mode = ["--simulation"] if self.simulate else []
        self.superlink = self._spawn(
            "superlink",
            [
                "flower-superlink",
                *tls_args,
                *mode,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database",
                ":flwr-in-memory:",
                "--disable-runtime-dependency-installation",
            ],
        )
        self._wait_for_port(self.port, timeout, "SuperLink")
        if self.simulate:
            return self
        for name in self.data_roots:
            self.start_node(name)
        time.sleep(2.0)
        dead = [name for name, proc in self.nodes.items() if proc.poll() is not None]
        if dead:
            raise RuntimeError(
                f"SuperNode(s) {dead} exited:\n" + "\n".join(self.log(f"supernode-{n}")[-2000:] for n in dead)
            )
        return self

    def start_node(self, name: str) -> subprocess.Popen:
        """Start (or restart) the SuperNode of site ``name``."""
        auth: list[str] = []
        if self.certs:
            key = self.workdir / "keys" / name
            if not key.exists():
                private, public = make_node_keys(self.workdir / "keys", name)
                self.flwr(["supernode", "register", str(public), CONNECTION], timeout=60)
            auth = ["--root-certificates", str(self.certs.ca_cert), "--auth-supernode-private-key", str(key)]
        else:
            auth = ["--insecure"]
        node_config = f"data-root='{self.data_roots[name]}'"
        self.nodes[name] = self._spawn(
            f"supernode-{name}",
            [
                "flower-supernode",
                *auth,
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--node-config",
                node_config,  # installs nothing unless --allow-... is given
            ],
        )
        return self.nodes[name]

    def kill_node(self, name: str) -> None:
        """Kill site ``name``'s SuperNode and the ClientApp it is running (SIGKILL, as a crash)."""
        proc = self.nodes.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def flwr(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """``flwr <args>`` with this federation's Flower home."""
        return subprocess.run(
            ["flwr", *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.workdir
        )

    def run(self, run_config: dict, timeout: float) -> subprocess.CompletedProcess:
        """``flwr run <ddval app> ddval --stream`` with ``run_config`` overrides; returns when the
        run has ended (its log in ``stdout``)."""
        return self.flwr(run_command(run_config)[1:], timeout)

    def submit(self, run_config: dict, log_name: str = "run") -> subprocess.Popen:
        """The same as :meth:`run`, in the background (its log in ``logs/<log_name>.log``)."""
        return self._spawn(log_name, run_command(run_config))

    def stop(self) -> None:
        """Stop every process this federation started (their process groups)."""
        for proc in [*self.nodes.values(), self.superlink]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.nodes.values(), self.superlink]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.nodes.clear()

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, name: str) -> str:
        """The log of process ``name`` (``superlink`` or ``supernode-<institution>``)."""
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        (self.workdir / "logs").mkdir(exist_ok=True)
        out = open(self.workdir / "logs" / f"{name}.log", "ab")
        # its own process group: stopping it also stops the ServerApp / ClientApp children it starts
        return subprocess.Popen(
            argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )

    def _write_connection(self) -> None:
        lines = [
            "[superlink]",
            f'default = "{CONNECTION}"',
            "",
            f"[superlink.{CONNECTION}]",
            f'address = "127.0.0.1:{self.port}"',
        ]
        lines += [f'root-certificates = "{self.certs.ca_cert}"'] if self.certs else ["insecure = true"]
        if self.simulate:
            lines += [f"options.num-supernodes = {self.simulate}", "options.backend.client-resources.num-cpus = 1"]
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def _wait_for_port(self, port: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.superlink is not None and self.superlink.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.superlink.returncode}:\n{self.log('superlink')[-3000:]}")
            with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")
