"""Command line: ``python -m tracejit cache info`` and ``python -m tracejit cache clear``.

Only the cache module is imported, and only once a command is known, so
the commands start quickly.
"""

from __future__ import annotations

import argparse
import sys


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def _cache_info(arguments: argparse.Namespace) -> int:
    from tracejit.codegen.cache import cache_info

    info = cache_info(arguments.dir)
    print(f"cache directory: {info['dir']}")
    print(f"entries:         {info['entries']} compiled modules, {info['graphs']} rewritten graphs")
    print(f"size:            {_human_bytes(info['bytes'])} ({info['bytes']} bytes)")
    return 0


def _cache_clear(arguments: argparse.Namespace) -> int:
    from tracejit.codegen.cache import cache_clear, cache_info

    directory = cache_info(arguments.dir)["dir"]
    removed = cache_clear(arguments.dir)
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {directory}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracejit")
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="the on-disk cache of compiled modules")
    cache_commands = cache.add_subparsers(dest="action", required=True)
    for name, handler, text in (
            ("info", _cache_info, "show the cache directory, its entries and size"),
            ("clear", _cache_clear, "delete every cached module")):
        action = cache_commands.add_parser(name, help=text)
        action.add_argument("--dir", default=None,
                            help="cache directory (default: config.cache_dir, "
                                 "which TRACEJIT_CACHE_DIR sets)")
        action.set_defaults(handler=handler)
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except PermissionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
