#!/usr/bin/env bash
# Rebuild the bundled reference checkpoints silc_bench/reference/{clip,silc}/ (what `silc-bench run` evaluates with no
# arguments): generate the `small` synthetic world, train configs/synth/{clip,silc}.yaml with the project's own
# trainer, and export each run's final student weights as fp16 safetensors next to its open_clip config.
# Runs that already exist under runs/ are reused (delete them to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[ -f .cache/world-small/world.json ] || "$bin/silc-bench" data synth --out .cache/world-small --preset small
for name in clip silc; do
    run=runs/synth-$name
    [ -f "$run/checkpoints/latest.pt" ] || "$bin/silc-bench" train --config "configs/synth/$name.yaml" --out "$run"
    ref=silc_bench/reference/$name
    mkdir -p "$ref"
    "$bin/silc-bench" export "$run" --out "$ref/model.safetensors" --dtype fp16
    rm "$ref/model.json"  # the reference keeps open_clip's local-dir config (model + preprocessing) instead
    cp "$run/open_clip_config.json" "$ref/open_clip_config.json"
    cp "$run/config.yaml" "$ref/train_config.yaml"
done
