#!/usr/bin/env bash
# GPU check (issue 17, part 5): evaluation throughput of ViT-B/16 on the GPU, silc-bench against clip_benchmark
# (silc_bench/perf/eval_throughput.py), with fp16 and bf16 autocast, and the GPU-decode opt-in (decode: tensor,
# nvJPEG). Made for one device call of about 8 minutes; every table and log lands in $OUT.
#
#   here, once:            bash silc_bench/perf/gpu_check.sh --fetch-wheels     (into the git-ignored .cache/)
#   on the device machine: run(command="bash silc_bench/perf/gpu_check.sh", carry=[".cache/gpu-wheels"],
#                              timeout_s=540)
#
# The device image has torch, torchvision, PIL, pandas and sklearn but not open_clip or clip_benchmark, and its
# numpy is >= 2.4 (which breaks clip_benchmark's accuracy): those travel as wheels for its Python 3.12.
# Environment: WORKERS (loader workers, default 0,8), RUN_S (seconds per throughput run, default 100).
set -euo pipefail

WHEELS=.cache/gpu-wheels
PINS=(open_clip_torch==3.3.0 clip-benchmark==1.6.2 ftfy==6.3.1 wcwidth==0.9.4 webdataset==1.0.2 braceexpand==0.1.7
    pycocotools==2.0.11 numpy==2.3.5)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$WHEELS" "${PINS[@]}"
    exit 0
fi

out=${OUT:?run this on the device machine, where OUT names the folder that comes back}
world=/tmp/silc-world-bench
failed=0

throughput() {  # NAME ARGS...: one eval_throughput table into $out/NAME.md, within RUN_S seconds
    local name=$1
    shift
    echo "== $name: eval_throughput $*"
    timeout "${RUN_S:-100}" python3 -m silc_bench.perf.eval_throughput --model openclip:ViT-B-16 --device cuda \
        --world "$world" --tasks zeroshot,retrieval --workers "${WORKERS:-0,8}" "$@" | tee "$out/$name.md" ||
        { echo "== $name FAILED (exit $?; 124 = over ${RUN_S:-100} s)"; failed=1; }
}

main() {
    nvidia-smi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    python3 -c 'import torch, torchvision, numpy, open_clip, clip_benchmark
print("torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__,
      "open_clip", open_clip.__version__, torch.cuda.get_device_name(0))'
    echo "== world (preset bench) in $world"
    timeout 150 python3 -c "from silc.data.synth import generate_world; generate_world('$world', seed=0, preset='bench')"
    throughput fp16-pil --precision fp16
    throughput bf16-pil --precision bf16
    if python3 -m silc_bench.perf.eval_throughput --help | grep -q -- --decode; then
        throughput fp16-tensor --precision fp16 --decode tensor
    else
        echo "== fp16-tensor skipped: eval_throughput has no --decode option"
        failed=1
    fi
    return "$failed"
}

main 2>&1 | tee "$out/gpu_check.log"
