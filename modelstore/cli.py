"""``modelship-models``: publish, list, show and fetch models in the model store (and promote,
aliases, history: :mod:`modelstore.release_cli`).

Exit codes: ``modelstore.errors.EXIT_CODES`` (printed by ``--help``). No failure ever ends in a
traceback: unexpected ones say so in one line, and ``--verbose`` logs the details.
The store is reached with ``--account-url``/``MODELSHIP_STORE_URL`` (DefaultAzureCredential) or
``AZURE_STORAGE_CONNECTION_STRING`` (emulator); account keys are never taken on the command line.
Every wait is bounded by ``--timeout``/``MODELSHIP_STORE_TIMEOUT`` (see ``modelstore.connection``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelstore import release_cli
from modelstore.connection import DEFAULT_TIMEOUT, TIMEOUT_ENV
from modelstore.errors import EXIT_CODES, ModelStoreError
from modelstore.store import DEFAULT_CACHE_DIR, DEFAULT_CONTAINER, ModelStore, VersionInfo, parse_ref

PROG = "modelship-models"


def _common() -> argparse.ArgumentParser:
    # default=SUPPRESS lets the options sit before or after the sub-command without clobbering.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--account-url", default=argparse.SUPPRESS, metavar="URL",
                   help="https://<account>.blob.core.windows.net (env MODELSHIP_STORE_URL); signs in "
                        "with DefaultAzureCredential. Without it, AZURE_STORAGE_CONNECTION_STRING is used")
    p.add_argument("--container", default=argparse.SUPPRESS,
                   help=f"container (env MODELSHIP_STORE_CONTAINER, default {DEFAULT_CONTAINER!r})")
    p.add_argument("--timeout", default=argparse.SUPPRESS, metavar="SECONDS",
                   help=f"give up on an unreachable store after this long, and on a transfer that stalls "
                        f"after twice this (env {TIMEOUT_ENV}, default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars")
    p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                   help="log what is done to stderr")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG, description="Publish, list, show and fetch models in the model store.", parents=[common],
        epilog="exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("publish", parents=[common], help="upload a model directory as a new version")
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument("--publisher", help="who publishes (env MODELSHIP_PUBLISHER, default user@host)")
    p.add_argument("--create-container", action="store_true",
                   help="create the container if it is missing (always done for the emulator)")
    p.add_argument("--json", action="store_true", help="print the published manifest as JSON")

    p = sub.add_parser("list", parents=[common], help="list models and their versions")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("show", parents=[common], help="show one version (default: latest)")
    p.add_argument("ref", metavar="NAME[@VERSION|ALIAS]")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("fetch", parents=[common], help="download a verified model directory")
    p.add_argument("ref", metavar="NAME[@VERSION|ALIAS|latest]")
    p.add_argument("dest", type=Path, metavar="DEST")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help=f"local cache keyed by sha256 (env MODELSHIP_CACHE_DIR, default {DEFAULT_CACHE_DIR})")
    p.add_argument("--no-cache", action="store_true", help="neither read nor fill the cache")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    release_cli.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _configure_logging(getattr(args, "verbose", False))
    try:
        kwargs: dict[str, Any] = {"progress": not getattr(args, "quiet", False),
                                  "timeout": getattr(args, "timeout", None)}
        if getattr(args, "create_container", False):
            kwargs["create_container"] = True
        store = ModelStore.from_env(container=getattr(args, "container", None),
                                    account_url=getattr(args, "account_url", None), **kwargs)
        logging.getLogger(__name__).info("model store: %s", store.where)
        return _COMMANDS[args.command](store, args)
    except ModelStoreError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line, never a traceback
        logging.getLogger(__name__).info("details of the unexpected error:", exc_info=True)
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc}. Run again with --verbose for "
              "details, and report it if it persists", file=sys.stderr)
        return 1
    finally:
        for name in ("modelstore", "azure"):
            logging.getLogger(name).removeHandler(handler)


def _configure_logging(verbose: bool) -> logging.Handler:
    """Messages of the ``modelstore`` loggers to stderr for this run (removed again when main returns)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger = logging.getLogger("modelstore")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # The SDK's own HTTP logging stays off: it would print request URLs and headers. Its warnings
    # (each credential DefaultAzureCredential tried, say) only with --verbose: the store's own
    # error already says what failed and what to do.
    azure = logging.getLogger("azure")
    azure.setLevel(logging.WARNING if verbose else logging.CRITICAL)
    azure.addHandler(handler)
    return handler


def _publish(store: ModelStore, args: argparse.Namespace) -> int:
    m = store.publish(args.model_dir, publisher=args.publisher)
    if args.json:
        _print_json(m.to_dict())
    else:
        print(f"published {m.ref} ({_size(m.size)}, sha256 {m.sha256}) to {store.where}; latest -> {m.ref}")
    return 0


def _list(store: ModelStore, args: argparse.Namespace) -> int:
    names = [parse_ref(args.name)[0]] if args.name else store.models()
    rows = [v for n in names for v in store.versions(n)]
    if args.name and not rows:
        raise store._no_model(args.name)
    if args.json:
        _print_json([v.to_dict() for v in rows])
    elif not rows:
        print(f"no models in {store.where}", file=sys.stderr)
    else:
        _print_table(rows)
    return 0


def _show(store: ModelStore, args: argparse.Namespace) -> int:
    manifest, _ = store.resolve(args.ref)
    versions = store.versions(manifest.name)
    published = next((v for v in versions if v.version == manifest.version), None)
    if args.json:
        _print_json({
            "manifest": manifest.to_dict(),
            "published": published.to_dict() if published else None,
            "versions": [v.to_dict() for v in versions],
        })
        return 0
    latest = next((v.version for v in versions if v.latest), "-")
    print(f"{manifest.ref}{'  (latest)' if published and published.latest else ''}")
    for label, value in (
        ("file", f"{manifest.model_file} ({_size(manifest.size)}, {manifest.size} bytes)"),
        ("sha256", manifest.sha256),
        ("framework", f"{manifest.framework} {manifest.trained_with}".strip()),
        ("inputs", ", ".join(f"{t.name} {t.datatype.value}{list(t.shape)}" for t in manifest.inputs)),
        ("outputs", ", ".join(f"{t.name} {t.datatype.value}{list(t.shape)}" for t in manifest.outputs)),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in sorted(manifest.metrics.items())) or "-"),
        ("created", manifest.created_at),
        ("source", manifest.source_revision),
        ("published", f"{published.published_at} by {published.publisher}" if published else "-"),
        ("latest", f"{manifest.name}@{latest}"),
        ("aliases", ", ".join(release_cli.aliases_naming(store, manifest)) or "-"),
    ):
        print(f"  {label:<10} {value}")
    print()
    _print_table(versions)
    return 0


def _fetch(store: ModelStore, args: argparse.Namespace) -> int:
    cache_dir = None
    if not args.no_cache:
        cache_dir = args.cache_dir or Path(os.environ.get("MODELSHIP_CACHE_DIR") or DEFAULT_CACHE_DIR)
    result = store.fetch(args.ref, args.dest, cache_dir=cache_dir)
    if args.json:
        _print_json(result.to_dict())
    else:
        m = result.manifest
        how = "from cache, 0 bytes transferred" if result.cache_hit else \
            f"downloaded {_size(result.bytes_transferred)}"
        print(f"fetched {m.ref} into {result.dest} (sha256 {m.sha256} verified, "
              f"signed by {result.signer}, {how})")
    return 0


_COMMANDS = {"publish": _publish, "list": _list, "show": _show, "fetch": _fetch, **release_cli.COMMANDS}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _print_table(rows: list[VersionInfo]) -> None:
    table = [("MODEL", "VERSION", "SIZE", "SHA256", "PUBLISHED", "PUBLISHER", "LATEST")]
    table += [(v.name, v.version, _size(v.size), v.sha256[:12], v.published_at, v.publisher,
               "*" if v.latest else "") for v in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
