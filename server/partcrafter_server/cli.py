"""`partcrafter-server serve | keys create | keys list | keys revoke | rotate-master-key | sweep | audit verify | check | settings`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

from pydantic import ValidationError

from .settings import CONFIG_ENV, Settings, describe_settings, setting_sources


def _overrides(args: argparse.Namespace, **overrides: object) -> dict[str, object]:
    """The settings given on the command line (and --config, which names the file)."""
    if getattr(args, "config", None):
        os.environ[CONFIG_ENV] = str(args.config)
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return {k: v for k, v in overrides.items() if v is not None}


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return Settings(**_overrides(args, **overrides))


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    problem = settings.listen_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import uvicorn

    from .app import DataDirBusy, create_app, hold_data_dir
    from .connections import guarded_protocol

    try:
        lock = hold_data_dir(settings.data_dir)
    except DataDirBusy as exc:
        print(exc, file=sys.stderr)
        return 1
    from .dbcheck import startup_problem

    damaged = startup_problem(settings.db_path)
    if damaged:
        print(damaged, file=sys.stderr)
        return 1
    try:
        sock = _listen(settings.host, settings.port)
    except OSError as exc:
        print(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, data_lock=lock)
    scheme = "https" if settings.tls else "http"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"PartCrafter server on {scheme}://{shown}:{port} (data: {settings.data_dir})", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        proxy_headers=settings.behind_tls_proxy,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,  # uvicorn's line has paths and client addresses; RequestGuard logs instead
        server_header=False,
        timeout_keep_alive=15,
        limit_concurrency=settings.max_connections,
        http=guarded_protocol(settings),
        log_config=None,
    )
    uvicorn.Server(config).run(sockets=[sock])  # the socket is bound already: its real port was printed
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """Bind before serving, so `--port 0` can say which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _context(args: argparse.Namespace, clock=None):
    from .clock import system_clock
    from .context import build_context

    return build_context(_settings(args), clock or system_clock)


def _keys_create(args: argparse.Namespace) -> int:
    from .auth import AgeNotConfirmed, create_key

    confirmed = args.holder_is_13_or_older
    if not confirmed and sys.stdin.isatty():
        answer = input("Is the person receiving this key 13 years of age or older? [y/N] ")
        confirmed = answer.strip().lower() in ("y", "yes")
    ctx = _context(args)
    try:
        key_id, key = create_key(ctx.db, ctx.clock(), confirmed, label=args.label, contact=args.contact)
    except AgeNotConfirmed as exc:
        print(f"No key created: {exc} (pass --holder-is-13-or-older once you have confirmed it).", file=sys.stderr)
        return 2
    print(f"Key id {key_id}. The key below is shown once and stored only as a hash; hand it over now.", file=sys.stderr)
    print(key)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from .auth import revoke_key

    ctx = _context(args)
    revoked = revoke_key(ctx.db, args.key_id, ctx.clock())
    erased = 0
    if args.erase:
        from .holders import erase

        erased = erase(ctx.service, args.key_id)[0]
    if not revoked and not erased:
        print(f"No active key {args.key_id}.", file=sys.stderr)
        return 1
    print(f"Key {args.key_id} revoked; {erased} job(s) erased.", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from .auth import list_keys
    from .clock import iso

    rows = list_keys(_context(args).db)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("No keys yet: create one with `partcrafter-server keys create`.", file=sys.stderr)
        return 0
    table = [("id", "label", "created", "last used", "state")]
    for r in rows:
        table.append(
            (
                r["id"],
                r["label"] or "-",
                (iso(r["created_at"]) or "")[:16].replace("T", " "),
                (iso(r["last_used_at"]) or "never")[:16].replace("T", " "),
                "revoked" if r["revoked_at"] else "active",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _rotate(args: argparse.Namespace) -> int:
    ctx = _context(args)
    new_id, count = ctx.keyring.rotate(ctx.db)
    from . import audit

    with ctx.db.write() as con:
        audit.append(ctx.db, con, ctx.clock(), "master_key.rotated")
    print(f"Master key rotated to {new_id}; {count} data key(s) rewrapped; old master keys destroyed.", file=sys.stderr)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .clock import FixedClock, parse_iso, system_clock

    clock = FixedClock(parse_iso(args.at)) if args.at else system_clock
    ctx = _context(args, clock)
    print(json.dumps(ctx.sweeper.sweep().as_dict()))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from . import audit

    verdict = audit.verify(_context(args).db)
    if verdict.ok:
        print(f"Audit log intact ({verdict.entries} entries).")
        return 0
    print(f"Audit log TAMPERED: {verdict.problem}.", file=sys.stderr)
    return 1


def _check(args: argparse.Namespace) -> int:
    """Integrity of the database and of the blob files against their keys; exit 1 when something is lost."""
    from .dbcheck import check

    settings = _settings(args)
    report = check(settings.db_path, settings.data_dir / "blobs")
    if report.wal:
        print(f"{settings.db_path}-wal: the write-ahead log is damaged: {report.wal}.")
    for problem in report.database:
        print(f"{settings.db_path}: damaged: {problem}")
    if report.missing_files:
        print(f"{len(report.missing_files)} blob file(s) missing: {', '.join(report.missing_files)} (their results answer 410 result_damaged).")
    if report.orphan_files:
        print(f"{report.orphan_files} orphan blob file(s) without a key: undecryptable; the retention sweep removes them.")
    if report.damaged:
        print("Recovery: docs/server.md, Damaged database.", file=sys.stderr)
        return 1
    print(f"Data folder sound: {settings.db_path} passed integrity_check and every blob key has its file.")
    return 0


def _settings_effective(args: argparse.Namespace) -> int:
    """The configuration this command line would run with, and where each value came from."""
    given = _overrides(args)
    settings = Settings(**given)
    sources = setting_sources(set(given))
    print(f"# Effective settings ({os.environ.get(CONFIG_ENV) or 'no config file'}); none of them is a secret:")
    print("# master keys live as files in key_dir and API keys only as hashes in the database.")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        shown = json.dumps(str(value) if isinstance(value, Path) else value)
        print(f"{name} = {shown}  # {sources[name]}")
    return 0


def _settings_doc(args: argparse.Namespace) -> int:
    print("| Setting | Environment variable | Default | Meaning |\n| --- | --- | --- | --- |")
    for row in describe_settings():
        default = row["default"]
        shown = "unset" if default is None else json.dumps(default if not isinstance(default, Path) else str(default))
        print(f"| `{row['name']}` | `{row['env']}` | `{shown}` | {row['description']} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partcrafter-server", description="PartCrafter inference server.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help=f"TOML or JSON settings file (same as {CONFIG_ENV}).")
    common.add_argument("--data-dir", type=Path, help="Data folder (same as PARTCRAFTER_SERVER_DATA_DIR).")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="Run the server.")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    keys = sub.add_parser("keys", help="Manage API keys.").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", parents=[common], help="Issue a key (shown once).")
    create.add_argument("--holder-is-13-or-older", action="store_true", help="Confirm the key holder is at least 13 years old.")
    create.add_argument("--label", help="What the key is called (the holder sees and may correct it).")
    create.add_argument("--contact", help="How to reach the holder (the holder sees and may correct it).")
    create.set_defaults(func=_keys_create)
    listing = keys.add_parser("list", parents=[common], help="Show every key: id, label, created, last used (never a secret).")
    listing.add_argument("--json", action="store_true", help="One JSON array instead of a table.")
    listing.set_defaults(func=_keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="Revoke a key.")
    revoke.add_argument("key_id")
    revoke.add_argument(
        "--erase", action="store_true", help="Also erase every job of this key (e.g. a holder found to be under 13)."
    )
    revoke.set_defaults(func=_keys_revoke)

    sub.add_parser("rotate-master-key", parents=[common], help="New master key; rewrap all data keys.").set_defaults(func=_rotate)
    sweep = sub.add_parser("sweep", parents=[common], help="Run the retention sweep once.")
    sweep.add_argument("--at", help="Sweep as if it were this ISO-8601 time (retention drills).")
    sweep.set_defaults(func=_sweep)
    audit_cmd = sub.add_parser("audit", help="Audit log tools.").add_subparsers(dest="audit_command", required=True)
    audit_cmd.add_parser("verify", parents=[common], help="Check the hash chain.").set_defaults(func=_audit_verify)
    sub.add_parser(
        "check", parents=[common], help="Check the database (integrity_check) and the blob files; exit 1 when damaged."
    ).set_defaults(func=_check)
    settings_cmd = sub.add_parser(
        "settings", parents=[common], help="Print the effective settings and where each came from (--reference: Markdown)."
    )
    settings_cmd.add_argument("--reference", action="store_true", help="The settings reference table for docs/server.md.")
    settings_cmd.set_defaults(func=lambda a: _settings_doc(a) if a.reference else _settings_effective(a))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as exc:
        print(f"Invalid settings: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
