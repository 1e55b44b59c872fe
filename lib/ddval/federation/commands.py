"""``ddval federate …``: the commands a consortium's IT runs (each prints the Flower command it runs).

* ``ddval federate certs --out DIR --sites a b c``: a local CA, the SuperLink's certificate and one
  key pair per site (for trials; a real consortium brings its own CA);
* ``ddval federate server --certs DIR``: the SuperLink (``flower-superlink`` with TLS, SuperNode
  authentication, no run-time installs);
* ``ddval federate register --certs DIR --superlink HOST:PORT KEY.pub``: admit a site's public key;
* ``ddval federate site --data-root DIR --superlink HOST:PORT --ca ca.pem --key site``: one
  institution's SuperNode (``flower-supernode``) on its own data root;
* ``ddval federate run --superlink HOST:PORT --ca ca.pem -c "preset='demo' setting='noniid'"``:
  start the ddval app (``flwr run``) and stream its log;
* ``ddval federate sites --preset demo --setting noniid --out DIR``: carve per-site data roots out of an
  in-process run (demo, tests);
* ``ddval federate local --preset demo --setting noniid --work DIR``: all of the above on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path


def _flower_home(args: argparse.Namespace) -> Path:
    return Path(args.flwr_home or Path.cwd() / ".flwr").resolve()


def _exec(argv: list[str], home: Path) -> int:
    """Print the Flower command, then become it (its exit code is the command's)."""
    from ddval.federation.launch import flower_env

    home.mkdir(parents=True, exist_ok=True)
    print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    os.execvpe(argv[0], argv, flower_env(home))
    return 0  # not reached


def cmd_certs(args: argparse.Namespace) -> int:
    from ddval.federation.certs import make_node_keys, make_server_certificates

    certs = make_server_certificates(args.out)
    print(f"CA: {certs.ca_cert}\nSuperLink: {certs.server_cert} {certs.server_key}")
    for name in args.sites:
        private, public = make_node_keys(Path(args.out) / "keys", name)
        print(f"site {name}: private key {private} (stays on the site), public key {public} (register it)")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    certs = Path(args.certs) if args.certs else None
    if certs is None and not args.insecure:
        raise ValueError(
            "ddval federate server needs --certs DIR (from ddval federate certs), or --insecure for a loopback test"
        )
    tls = (
        [
            "--ssl-certfile",
            str(certs / "server.pem"),
            "--ssl-keyfile",
            str(certs / "server.key"),
            "--ssl-ca-certfile",
            str(certs / "ca.pem"),
            "--enable-supernode-auth",
        ]
        if certs
        else ["--insecure"]
    )
    argv = [
        "flower-superlink",
        *tls,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--database",
        str(Path(args.database).resolve()),
        "--disable-runtime-dependency-installation",
    ]
    return _exec(argv, _flower_home(args))


def _connection(args: argparse.Namespace) -> str:
    """Write the ``flwr`` CLI's connection to the SuperLink into the Flower home; returns its name."""
    home = _flower_home(args)
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", 'default = "ddval"', "", "[superlink.ddval]", f'address = "{args.superlink}"']
    lines += [f'root-certificates = "{Path(args.ca).resolve()}"'] if args.ca else ["insecure = true"]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return "ddval"


def cmd_register(args: argparse.Namespace) -> int:
    return _exec(
        ["flwr", "supernode", "register", str(Path(args.public_key).resolve()), _connection(args)], _flower_home(args)
    )


def cmd_site(args: argparse.Namespace) -> int:
    from ddval.federation.sites import load_site

    site = load_site(args.data_root)  # fails here, clearly, before anything connects
    auth = (
        [
            "--root-certificates",
            str(Path(args.ca).resolve()),
            "--auth-supernode-private-key",
            str(Path(args.key).resolve()),
        ]
        if args.ca
        else ["--insecure"]
    )
    argv = [
        "flower-supernode",
        *auth,
        "--superlink",
        args.superlink,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--node-config",
        f"data-root='{site.root}'",
    ]
    return _exec(argv, _flower_home(args))


def cmd_run(args: argparse.Namespace) -> int:
    from ddval.federation.launch import APP_DIR

    argv = ["flwr", "run", str(APP_DIR), _connection(args), "--stream"]
    argv += ["--run-config", args.run_config] if args.run_config else []
    return _exec(argv, _flower_home(args))


def cmd_sites(args: argparse.Namespace) -> int:
    from ddval.config import load_config
    from ddval.data import run_index_stage, run_resize_stage
    from ddval.federation.sites import export_sites

    cfg = load_config(args.preset)
    run_index_stage(cfg, args.results)
    run_resize_stage(cfg, args.results)
    for name, root in export_sites(cfg, args.seed, args.setting, args.out, root=args.results).items():
        print(f"{name}: {root}")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    import time

    from ddval.federation.launch import LocalFederation

    args.out = str(Path(args.work) / "sites")
    cmd_sites(args)
    roots = {p.name: p for p in sorted(Path(args.out).iterdir()) if p.is_dir()}
    server = Path(args.work) / "server-results"
    config = {"preset": args.preset, "seed": args.seed, "setting": args.setting, "results-root": str(server.resolve())}
    started = time.perf_counter()
    with LocalFederation(Path(args.work) / "federation", roots, tls=not args.insecure) as fed:
        done = fed.run(config, timeout=args.timeout)
    print(done.stdout[-3000:])
    print(f"federated run: {time.perf_counter() - started:.1f} s; results under {server}")
    return done.returncode


def add_federate_parser(sub) -> None:
    """Register ``ddval federate`` and its subcommands on the CLI's subparsers."""
    fed = sub.add_parser("federate", help="run a setting as a Flower federation (one SuperNode per institution)")
    cmds = fed.add_subparsers(dest="federate_command", required=True)

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text)
        p.add_argument("--flwr-home", default=None, help="Flower's home folder (default: ./.flwr)")
        p.set_defaults(func=func)
        return p

    p = command("certs", cmd_certs, "a local CA, the SuperLink certificate and site key pairs (trials)")
    p.add_argument("--out", required=True)
    p.add_argument("--sites", nargs="*", default=[])
    p = command("server", cmd_server, "the SuperLink (flower-superlink)")
    p.add_argument("--certs", help="folder with ca.pem, server.pem, server.key")
    p.add_argument("--insecure", action="store_true", help="no TLS, no node authentication: loopback tests only")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9091)
    p.add_argument("--database", default="superlink.db")
    for name, func, text in (
        ("register", cmd_register, "admit a site's public key"),
        ("run", cmd_run, "start the ddval app (flwr run) and stream its log"),
    ):
        p = command(name, func, text)
        p.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
        p.add_argument("--ca", help="the consortium's CA certificate (omit: insecure loopback)")
        if name == "register":
            p.add_argument("public_key")
        else:
            p.add_argument("-c", "--run-config", default="", help="e.g. \"preset='demo' seed=0 setting='noniid'\"")
    p = command("site", cmd_site, "one institution's SuperNode (flower-supernode) on its data root")
    p.add_argument("--data-root", required=True)
    p.add_argument("--superlink", required=True)
    p.add_argument("--ca")
    p.add_argument("--key", help="the site's private key (ddval federate certs --sites)")
    p.add_argument("--port", type=int, default=9094, help="local port between the SuperNode and its ClientApp")
    for name, func, text in (
        ("sites", cmd_sites, "per-site data roots from an in-process run (demo, tests)"),
        ("local", cmd_local, "a whole federation on 127.0.0.1: sites, SuperLink, SuperNodes, run"),
    ):
        p = command(name, func, text)
        p.add_argument("--preset", default="demo")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--setting", default="noniid")
        p.add_argument("--results", default=None, help="results root of the in-process data stages")
        if name == "sites":
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--work", required=True)
            p.add_argument("--insecure", action="store_true")
            p.add_argument("--timeout", type=float, default=3600.0)
