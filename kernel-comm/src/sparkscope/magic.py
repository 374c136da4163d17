"""`%sparkscope`: show the connection and the followed sessions, or change settings."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .extension import Monitor

USAGE = """%sparkscope [on|off] [--url URL] [--token-file PATH] [--throttle-ms N] [--settle-ms N]
%sparkscope advisor [NAME=VALUE ...]

Without options: the agent connection, the followed Spark Connect sessions and the settings.
  --url URL          the agent's stream (default $SPARKSCOPE_URL, else the Connect server's
                     spark.sparkscope.streamUrl, else ws://127.0.0.1:4740/api/v1/stream)
  --token-file PATH  a file holding this notebook's credential for the agent (default
                     $SPARKSCOPE_TOKEN, $SPARKSCOPE_TOKEN_FILE, JupyterHub's API token, or
                     ~/.sparkscope/token); a token typed into a cell would be saved in the
                     notebook and its history
  --throttle-ms N  at most one widget update per cell every N ms
  --settle-ms N    wait up to N ms after a Spark cell for its final state (0: never)
  off / on         hide every sparkscope widget and stop tagging cells and following the
                   agent / show them again and resume (also --off / --on)
  advisor NAME=VALUE  set thresholds of the advisor's findings for this kernel (e.g.
                   small_file_bytes=1048576; also $SPARKSCOPE_ADVISOR_<NAME> when it starts);
                   without any, show them all
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"%sparkscope: {message}\n\n{USAGE}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%sparkscope", add_help=False)
    p.add_argument("switch", nargs="?", choices=("on", "off"))
    p.add_argument("--url")
    p.add_argument("--token-file")
    p.add_argument("--throttle-ms", type=int)
    p.add_argument("--settle-ms", type=int)
    p.add_argument("--on", action="store_true")
    p.add_argument("--off", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def register_magic(shell: InteractiveShell, monitor: Monitor) -> None:
    def sparkscope(line: str = "") -> None:
        words = shlex.split(line)
        if words[:1] == ["advisor"]:
            advisor(words[1:])
            return
        args = _parser().parse_args(words)
        if args.help:
            print(USAGE)
            return
        args.on = args.on or args.switch == "on"
        args.off = args.off or args.switch == "off"
        if args.on and args.off:
            raise UsageError("%sparkscope: --on or --off, not both")
        changes: dict[str, Any] = {}
        for name in ("url", "throttle_ms", "settle_ms"):
            value = getattr(args, name)
            if value is not None:
                changes[name] = value
        if args.token_file is not None:
            from .extension import read_token_file

            token = read_token_file(args.token_file)
            if token is None:
                raise UsageError(f"%sparkscope: no token in {args.token_file}")
            changes["token"] = token
        if args.on or args.off:
            changes["enabled"] = bool(args.on)
            monitor.set_hidden(bool(args.off))
        if changes:
            monitor.reconfigure(**changes)
        c = monitor.config
        print(monitor.status())
        print(
            f"  settings: throttle {c.throttle_ms} ms, settle {c.settle_ms} ms, "
            f"token {'set' if c.token else 'not set'}, {'on' if c.enabled else 'off'}"
        )

    sparkscope.__doc__ = USAGE
    shell.register_magic_function(sparkscope, "line", "sparkscope")


def advisor(settings: list[str]) -> None:
    """`%sparkscope advisor [NAME=VALUE ...]`: set the advisor's thresholds (all or none), then
    show them; the next update of each cell's view applies them."""
    from . import cellview

    pairs = [item.partition("=") for item in settings]
    if any(not sep for _, sep, _ in pairs):
        raise UsageError(f"%sparkscope advisor: NAME=VALUE, e.g. small_files=200\n\n{USAGE}")
    try:
        cellview.set_advisor_thresholds({name: value for name, _, value in pairs})
    except ValueError as e:
        raise UsageError(f"%sparkscope advisor: {e}") from None
    print("advisor thresholds (SPARKSCOPE_ADVISOR_<NAME> sets them when the kernel starts):")
    for name, value in cellview.advisor_thresholds().items():
        print(f"  {name.lower()}={value}")
