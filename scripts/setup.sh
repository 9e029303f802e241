#!/usr/bin/env bash
# Create .venv (if missing) and install silc-bench with its dev tools and the OpenMMLab stack.
# Idempotent: a second run takes seconds. Set SILC_SKIP_MM=1 to skip the OpenMMLab stack.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
stamp=.venv/.silc-bench-installed
# The stamp covers the install recipe and whether the OpenMMLab stack was skipped: a .venv set up with
# SILC_SKIP_MM=1 gets the stack on the next run without it.
skip_mm=$([ "${SILC_SKIP_MM:-0}" = 1 ] && echo 1 || echo 0)
want=$({ cat pyproject.toml scripts/setup.sh scripts/install-mm.sh; echo "SILC_SKIP_MM=$skip_mm"; } | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade "pip>=24"
    .venv/bin/python -m pip install -q -e ".[dev]"
    if [ "$skip_mm" != 1 ]; then bash scripts/install-mm.sh; fi
    echo "$want" > "$stamp"
fi
