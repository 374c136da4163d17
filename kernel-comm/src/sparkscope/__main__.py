"""`python -m sparkscope …` runs the installed `sparkscope` binary with the same arguments."""

from __future__ import annotations

import os
import subprocess
import sys

from .install import NotInstalled, binary


def main() -> int:
    try:
        exe = str(binary())
    except NotInstalled as e:
        print(f"sparkscope: {e}", file=sys.stderr)
        return 2
    if os.name == "posix":
        os.execv(exe, [exe, *sys.argv[1:]])
    return subprocess.call([exe, *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
