"""The training config: a typed dataclass schema read from YAML, with dotted ``--set key.sub=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from silc.data.pairs import DataConfig
from silc.errors import UserError
from silc.heads import HeadConfig
from silc.io import atomic_write_text
from silc.kernel.configs import deep_merge
from silc.masking import MaskConfig
from silc.model import ModelConfig
from silc.optim import OptimConfig
from silc.views import ViewsConfig


@dataclass
class LossConfig:
    """Objective switch and the distillation hyper-parameters (DINO defaults)."""

    # silc_masked: silc + masked patch self-distillation (iBOT; SigLIP 2's second term), ``masked_weight`` x it
    objective: Literal["clip", "distill", "silc", "silc_masked"] = "silc"
    contrastive: Literal["clip", "siglip"] = "clip"
    distill_weight: float = 1.0
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 300
    center_momentum: float = 0.9
    distill_start_step: int = 0
    masked_weight: float = 1.0  # weight of the masked patch term (objective silc_masked)


@dataclass
class EMAConfig:
    """Teacher EMA momentum: ``cosine`` from ``momentum`` to ``final_momentum``, or ``constant``."""

    schedule: Literal["cosine", "constant"] = "cosine"
    momentum: float = 0.996
    final_momentum: float = 1.0


@dataclass
class TrainConfig:
    """Loop length, global batch, precision, logging and checkpoint cadence."""

    steps: int = 1000
    stop_at: int | None = None  # stop (with a checkpoint) after this step; schedules still span ``steps``
    batch_size: int = 64
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = 10
    save_every: int = 500
    eval_every: int = 0
    tensorboard: bool = False
    deterministic: bool = False
    progress: bool = True


@dataclass
class EvalConfig:
    """Evaluation during training, every ``train.eval_every`` steps (the CLI builds it from the benchmark registry)."""

    suite: str = "default"  # a suite name or FILE.yaml (benchmarks/suites/)
    weights: Literal["student", "teacher", "both"] = "student"
    data_root: str | None = None  # None: the suite's synthetic world (generated into the cache)


@dataclass
class Config:
    """Everything a training run needs; written merged to ``RUN/config.yaml`` before the first step."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or fail naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise UserError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"{key}: expected {len(args)} values, got {list(value)}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key}: expected a string, got {value!r}")
    return value


def _unknown_key(key: str, valid: list[str]) -> UserError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(valid)}"
    return UserError(f"unknown config key {key!r}{hint}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        full = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise _unknown_key(full, names)
        kwargs[k] = _coerce(v, hints[k], full)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{prefix or 'config'}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists) of a config, for YAML and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], YAML-parsed value)."""
    if "=" not in item:
        raise UserError(f"--set {item}: expected key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set each dotted key in the nested dict ``data`` (keys are validated when the schema is built)."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item}: {part} is not a section")
        node[path[-1]] = value
    return data


def read_config_file(path: str | Path, _chain: tuple[tuple[Path, Path], ...] = ()) -> dict:
    """The YAML mapping of a config file with its ``base:`` chain merged in (base first, the file's keys over it).

    ``base:`` names another config file, relative to the file that names it; bases may have bases of their own.
    """
    path = Path(path)
    here = path.resolve()
    seen = [resolved for resolved, _ in _chain]
    if here in seen:
        names = [str(shown) for _, shown in _chain[seen.index(here) :]]
        raise UserError(f"config base cycle: {' -> '.join([*names, str(path)])}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: base: expected a path to a config file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(f"{path}: base {base!r} not found ({base_path})")
    return deep_merge(read_config_file(base_path, (*_chain, (here, path))), data)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read YAML (or start from defaults), merge its ``base:`` chain, apply ``--set`` overrides, validate.

    Precedence: base < the file's own keys < ``--set``. The result is the merged, typed ``Config``.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--config {path}: file not found")
        data = read_config_file(path)
    data = apply_overrides(data, overrides or [])
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a ``Config`` from ``to_dict`` output (e.g. the one stored in a checkpoint)."""
    return _build(Config, data)


def validate(cfg: Config) -> None:
    """Cross-field checks that a single field's type cannot express."""
    if cfg.train.steps < 1 or cfg.train.batch_size < 1:
        raise UserError("train.steps and train.batch_size must be >= 1")
    if cfg.train.log_every < 1 or cfg.train.save_every < 0:
        raise UserError("train.log_every must be >= 1 and train.save_every >= 0")
    if cfg.loss.objective != "clip" and cfg.views.global_crops + cfg.views.local_crops < 2:
        raise UserError("views: distillation needs at least 2 views in total (global_crops + local_crops)")
    if cfg.ema.schedule == "cosine" and not cfg.ema.momentum <= cfg.ema.final_momentum <= 1.0:
        raise UserError("ema: need momentum <= final_momentum <= 1.0")
    if not 0.0 <= cfg.ema.momentum <= 1.0:
        raise UserError("ema.momentum must be in [0, 1]")
    if cfg.loss.objective == "silc_masked":
        cfg.mask.check()
        if cfg.loss.masked_weight < 0:
            raise UserError(f"loss.masked_weight: expected a value >= 0, got {cfg.loss.masked_weight}")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the merged config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
