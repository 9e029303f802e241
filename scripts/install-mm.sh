#!/usr/bin/env bash
# Install the OpenMMLab stack (the `mm` extra) into .venv: mmengine, mmsegmentation, mmdet and
# mmcv 2.1.0 built from its PyPI sdist with compiled ops (PyPI has no mmcv wheels; its setup.py needs
# -std=c++20 for torch 2.14). The built wheel is cached under ~/.cache/silc-bench/wheels keyed by
# mmcv, torch and Python versions, so only a fresh machine pays the ~12-minute build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MMCV=2.1.0
"$PY" -m pip install -q "mmengine==0.10.7" "mmsegmentation==1.2.2" "mmdet==3.3.0" ninja wheel \
    "setuptools>=77.0.3,<82" "numpy>=2,<2.4" ftfy regex
if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV')" 2>/dev/null; then
    echo "mmcv $MMCV with ops already installed"; exit 0
fi
# Key the cache by the full torch build (e.g. 2.14.1+cu130) and whether CUDA ops get compiled here.
TORCH=$("$PY" -c "import torch; print(torch.__version__.replace('+', '-'))")
OPS=$("$PY" -c "import torch; print('cudaops' if torch.cuda.is_available() else 'cpuops')")
PYV=$("$PY" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
CACHE="${SILC_BENCH_CACHE:-$HOME/.cache/silc-bench}/wheels/mmcv-$MMCV-torch$TORCH-$PYV-$OPS"
if ! ls "$CACHE"/mmcv-$MMCV-*.whl >/dev/null 2>&1; then
    echo "building mmcv $MMCV with ops for torch $TORCH ($PYV); about 12 minutes on 2 cores"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD" "$CACHE.tmp"' EXIT
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$BUILD" "mmcv==$MMCV"
    tar xzf "$BUILD/mmcv-$MMCV.tar.gz" -C "$BUILD"
    sed -i "s/extra_compile_args\['cxx'\] = \['-std=c++17'\]/extra_compile_args['cxx'] = ['-std=c++20']/" \
        "$BUILD/mmcv-$MMCV/setup.py"
    grep -q "std=c++20" "$BUILD/mmcv-$MMCV/setup.py" || { echo "mmcv setup.py patch did not apply" >&2; exit 1; }
    rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" PATH="$PWD/.venv/bin:$PATH" \
        "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$CACHE.tmp" "$BUILD/mmcv-$MMCV"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
"$PY" -m pip install -q --no-deps "$CACHE"/mmcv-$MMCV-*.whl
"$PY" -c "import mmcv.ops, mmseg, mmdet; print('mmcv', mmcv.__version__, 'ops ok')"
