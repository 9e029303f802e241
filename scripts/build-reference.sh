#!/usr/bin/env bash
# Rebuild the bundled reference checkpoints silc/reference/{clip,silc}/ (what `silc-bench run` evaluates with no
# arguments): generate the `small` synthetic world, train configs/synth/{clip,silc}.yaml with the project's own
# trainer, and store each run's final student weights as fp16 safetensors next to its open_clip config.
# Runs that already exist under runs/ are reused (delete them to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[ -f .cache/world-small/world.json ] || "$bin/silc-bench" data synth --out .cache/world-small --preset small
for name in clip silc; do
    run=runs/synth-$name
    [ -f "$run/checkpoints/latest.pt" ] || "$bin/silc-bench" train --config "configs/synth/$name.yaml" --out "$run"
    "$bin/python" - "$run" "silc/reference/$name" <<'EOF'
import sys
from pathlib import Path

from safetensors.torch import save

from silc.checkpoint import load_checkpoint
from silc.io import atomic_write, atomic_write_bytes

run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in ckpt["state_dict"].items()}
meta = {"model_name": str(ckpt["model_name"]), "step": str(ckpt["step"]), "config": str(run / "config.yaml")}
out.mkdir(parents=True, exist_ok=True)
atomic_write(out / "model.safetensors", lambda f: f.write(save(tensors, metadata=meta)))
atomic_write_bytes(out / "open_clip_config.json", (run / "open_clip_config.json").read_bytes())
atomic_write_bytes(out / "train_config.yaml", (run / "config.yaml").read_bytes())
print(f"{out}: step {ckpt['step']}, {sum(t.numel() for t in tensors.values())} parameters in fp16")
EOF
done
