"""The training loop (one loop for every algorithm) and the run directory it writes.

Run directory ``RUN/``: ``config.json`` (resolved config, package versions, git commit), ``metrics.jsonl``
(one JSON object per epoch: epoch, train_loss, ca, ra in percent, epoch_time_s, images_per_s, lr),
``checkpoints/last.pt`` and ``checkpoints/best.pt`` (highest validation RA), written atomically every epoch.

Validation each epoch, on ``val_size`` held-out training images: CA at the algorithm's clean knobs
(lambda_n = 0 for float/oat) and RA under the training PGD attack at its robust knobs (lambda_n = 1).

Under ``torchrun`` the loop runs DistributedDataParallel (gloo on CPU, NCCL on CUDA) with a
DistributedSampler; ``batch_size`` is the global batch; only rank 0 validates and writes. On CUDA it uses
autocast (float16) with a GradScaler and channels_last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hwsim.errors import HwsimError
from hwsim.train import _models, checkpoint, data
from hwsim.train.algorithms import Algorithm, AttackSettings, create_algorithm
from hwsim.train.attacks import attack_context, pgd
from hwsim.train.config import TrainConfig, make_config
from hwsim.train.protocol import LEDGER_FIELDS, Hooks, StepContext
from hwsim.train.sparse import SparseLearning, masked_layers
from hwsim.variants import get_variant
from hwsim.train.bullettrain import BulletTrain

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
CHECKPOINTS = ("last", "best")


# ------------------------------------------------------------------------------------------------ environment

@dataclass(frozen=True)
class Dist:
    """Process-group facts: rank, world size, and the device this rank uses."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise HwsimError(f"device {name!r} unknown; valid: auto, cpu, cuda, cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HwsimError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _init_dist(device_name: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(device_name, local_rank)
    if world == 1:
        return Dist(0, 1, device)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), dist.get_world_size(), device)


def _all_reduce_sum(value: torch.Tensor, dist_info: Dist) -> torch.Tensor:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
    return value


def _sync_buffers(model: nn.Module, dist_info: Dist) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last forward of an epoch each rank
    holds statistics of its own shard; syncing makes every rank hold exactly the state rank 0 checkpoints.
    """
    if dist_info.world_size > 1:
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def _barrier(dist_info: Dist) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on."""
    from hwsim import __version__

    return {"hwsim": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def git_commit() -> str | None:
    """The commit of the source tree hwsim runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar on stderr when it is a terminal (and ``enabled``), else the iterable itself."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), leave=False, **kwargs)


# ------------------------------------------------------------------------------------------------ building

def build_model(config: TrainConfig) -> nn.Module:
    """The model a config describes (through ``models.create_model``)."""
    source = data.get_source(config.dataset)
    return _models.create_model(config.model, config.variant, dataset=source.model_dataset,
                                film_dim=config.film_dim, bn=config.bn, widths=config.widths,
                                density=config.density, dropout=config.dropout or 0.0,
                                lambdas=config.oat_lambdas)


def build_algorithm(config: TrainConfig) -> Algorithm:
    """The registered algorithm with the config's attack and algorithm options."""
    attack = AttackSettings(config.eps, config.step_size, config.attack_steps, config.attack_mode)
    options: dict[str, Any] = {}
    if config.algorithm == "pgd-at":
        options["lambda_"] = config.pgd_lambda
        options["noise_lambda"] = config.noise_lambda
    elif config.algorithm == "oat":
        options["lambdas"] = config.oat_lambdas
    elif config.algorithm in ("trades", "mart"):
        options["beta"] = config.beta
    elif config.algorithm == "free":
        options["replays"] = config.replays
    elif config.algorithm == "fast":
        options.update(step_factor=config.fast_step, early_stop=config.early_stop)
    return create_algorithm(config.algorithm, attack, **options)


def build_extensions(config: TrainConfig, model: nn.Module) -> list[Hooks]:
    """The extensions the model or the config turns on: sparse learning whenever the model has masks."""
    extensions: list[Hooks] = []
    if masked_layers(model):
        granularity = get_variant(config.variant).granularity or "irregular"
        extensions.append(SparseLearning(config.density, granularity, prune_rate=config.prune_rate))
    if config.bullettrain:
        n_o, n_b, n_r = config.bt_steps or (0, config.attack_steps, 1)
        extensions.append(BulletTrain(config.attack_steps, n_o, n_b, n_r, p=config.bt_p, gamma=config.bt_gamma))
    return extensions


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD; FLOAT's noise scales alpha get no weight decay unless ``alpha_weight_decay`` (as in PNI)."""
    from hwsim.count import noise_scale_ids

    marked = noise_scale_ids(model)  # FLOAT's alpha by the marker on its module, never by name
    alphas = [p for p in model.parameters() if id(p) in marked]
    others = [p for p in model.parameters() if id(p) not in marked]
    groups: list[dict[str, Any]] = [{"params": others}]
    if alphas:
        groups.append({"params": alphas, "weight_decay": config.weight_decay if config.alpha_weight_decay else 0.0})
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def model_widths(model: nn.Module) -> tuple[float, ...]:
    """The widths one batch trains: the model's S_f (slimmable) or its one width."""
    state = getattr(model, "hwsim_knobs", None)
    return tuple(state.widths) if state is not None else (1.0,)


def macs_per_image(model: nn.Module, widths: tuple[float, ...]) -> dict[float, int]:
    """Forward MACs per image (conv + linear, hwsim's counter) at each width, for the training ledger."""
    from hwsim.trace import trace_model

    info = getattr(model, "hwsim_info", None)
    if info is None:
        raise HwsimError("the training ledger needs the model's input size (hwsim_info)")
    input_size = (info["in_channels"], info["input_size"], info["input_size"])
    out = {}
    first = next(model.parameters(), None)
    cuda = [first.device] if first is not None and first.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the trace draws an input: keep the run's RNG streams
        for width in widths:
            with _knobs_or_none(model, {"width": width} if len(widths) > 1 else {}):
                out[width] = sum(record.macs for record in trace_model(model, input_size).layers)
    return out


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, epochs: int,
               batches: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over ``epochs`` passes of ``batches`` batches ("cyclic" steps per batch)."""
    if config.schedule == "cyclic":
        def one_cycle(step: int) -> float:  # the lr of batch `step` (0-based) as a fraction of the peak
            return float(np.interp((step + 1) / batches, [0, 0.4 * epochs, epochs], [0.0, 1.0, 0.0]))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if config.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


# ------------------------------------------------------------------------------------------------ run dir

def _check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise HwsimError(f"cannot resume {out}: no {CONFIG_FILE} there")
    elif out.exists() and (not out.is_dir() or any(p.name != LOCK_FILE for p in out.iterdir())):
        raise HwsimError(f"output directory {out} exists and is not empty; choose a new --out or --resume it")


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig saved in ``RUN/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise HwsimError(f"{run_dir} is not a run directory: no {CONFIG_FILE}")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HwsimError(f"{path} is not valid JSON: {exc}") from None
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return make_config({k: v for k, v in saved.items() if k in fields}, source=str(path))


def _write_config(config: TrainConfig, out: Path, dist_info: Dist) -> None:
    resolved = config.to_dict()
    resolved.update(model_dataset=data.get_source(config.dataset).model_dataset, versions=versions(),
                    git_commit=git_commit(), world_size=dist_info.world_size, device=str(dist_info.device))
    (out / CONFIG_FILE).write_text(json.dumps(resolved, indent=2) + "\n")


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs after the checkpoint (a run killed between the two writes)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epochs_done]
    path.write_text("".join(ln + "\n" for ln in kept))


# ------------------------------------------------------------------------------------------------ loop

@torch.no_grad()
def _clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(1) == y).sum())


def validate(model: nn.Module, algorithm: Algorithm, loader: DataLoader, device: torch.device,
             show: bool = False, widths: tuple[float, ...] = (1.0,)) -> dict[float, tuple[float, float]]:
    """``{width: (CA, RA)}`` in percent on ``loader``: CA at the algorithm's clean knobs, RA under its training
    attack at its robust knobs, at every width of a slimmable model (model in eval mode; mode and knobs
    restored afterwards)."""
    results = {}
    for width in widths:
        correct_c = correct_a = total = 0
        width_knob = {"width": width} if len(widths) > 1 else {}
        with attack_context(model, "eval"), _knobs_or_none(model, width_knob):
            for images, labels in progress(loader, show, desc=f"validate w={width:g}"):
                x, y = data.to_float(images.to(device)), labels.to(device)
                with _knobs_or_none(model, algorithm.clean_knobs):
                    correct_c += _clean_correct(model, x, y)
                with _knobs_or_none(model, algorithm.robust_knobs):
                    a = algorithm.attack
                    x_adv = pgd(model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps)
                    correct_a += _clean_correct(model, x_adv, y)
                total += len(y)
        results[width] = (100.0 * correct_c / total, 100.0 * correct_a / total)
    return results


@contextlib.contextmanager
def _knobs_or_none(model: nn.Module, settings: dict[str, Any]) -> Iterator[None]:
    if settings:
        with _models.knobs(model, **settings):
            yield
    else:
        yield


@contextlib.contextmanager
def _run_dir_lock(out: Path, resume: bool, main: bool) -> Iterator[None]:
    """Create ``out`` (unless resuming), hold an exclusive lock on it for the run and check it can be used.

    A second ``hwsim train`` on the same directory fails at once naming the first (its pid). A run that fails
    before its first checkpoint leaves nothing behind in a directory it created.
    """
    if not main:  # only rank 0 writes
        yield
        return
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / LOCK_FILE).open("a+")
    except OSError as exc:
        raise HwsimError(f"cannot create run directory {out}: {exc.strerror or exc}") from None
    locked = False
    try:
        import fcntl

        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise HwsimError(f"run directory {out} is in use by another hwsim train (pid {owner}); "
                             "wait for it or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _check_out_dir(out, resume)
        try:
            yield
        except BaseException:
            if created and not (out / "checkpoints" / "last.pt").exists():
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        if locked:  # the lock file of a run that holds it is not ours to remove
            (out / LOCK_FILE).unlink(missing_ok=True)
        handle.close()


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    """One line per epoch on stderr, terminal or not (progress bars only on a terminal)."""
    print(f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  CA {record['ca']:.2f}%  "
          f"RA {record['ra']:.2f}%  {record['epoch_time_s']:.1f} s", file=sys.stderr, flush=True)


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, stop_after: int | None = None,
          resume_from: str = "last") -> Path:
    """Train ``config`` into the run directory ``out`` and return its path.

    ``resume=True`` continues ``out`` from ``checkpoints/last.pt`` exactly (same weights as an uninterrupted
    run, in a single process), reading the config from ``out/config.json`` (``config`` is then only used for
    ``device`` and ``workers``); ``resume_from="best"`` continues from ``best.pt`` instead (when ``last.pt``
    cannot be read; the epochs after it are trained again). ``stop_after`` ends this invocation after that many
    completed epochs (the run can be resumed later), e.g. for time-sliced jobs. A non-empty ``out`` without
    ``resume``, a directory another run holds, and a non-finite loss raise HwsimError.
    """
    out = Path(out)
    if resume_from not in CHECKPOINTS:
        raise HwsimError(f"resume_from must be one of {', '.join(CHECKPOINTS)}, got {resume_from!r}")
    if resume:
        saved = read_run_config(out)
        config = dataclasses.replace(saved, device=config.device, workers=config.workers)
    dist_info = _init_dist(config.device)
    with _run_dir_lock(out, resume, dist_info.main):
        return _train(config, out, dist_info, resume, stop_after, resume_from)


def _train(config: TrainConfig, out: Path, dist_info: Dist, resume: bool, stop_after: int | None,
           resume_from: str) -> Path:
    seed_everything(config.seed + dist_info.rank)
    source = data.get_source(config.dataset)
    full = data.load_split(config.dataset, "train", config.data_dir, synthetic_size=config.synthetic_size)
    train_set, val_set = data.train_val_split(full, min(config.val_size, len(full) // 5), config.seed)

    model = build_model(config).to(dist_info.device)
    algorithm = build_algorithm(config)
    extensions = build_extensions(config, model)
    widths = model_widths(model)
    use_amp = config.amp and dist_info.device.type == "cuda"
    if use_amp:
        model = model.to(memory_format=torch.channels_last)

    net: nn.Module = model
    sampler = None
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data.distributed import DistributedSampler

        on_cuda = dist_info.device.type == "cuda"
        # a slimmable step leaves the other widths' switchable BNs unused in each backward
        net = DistributedDataParallel(model, device_ids=[dist_info.device.index] if on_cuda else None,
                                      find_unused_parameters=len(widths) > 1)
        sampler = DistributedSampler(train_set, dist_info.world_size, dist_info.rank, shuffle=True,
                                     seed=config.seed, drop_last=True)
    per_rank_batch = max(config.batch_size // dist_info.world_size, 1)
    pin = dist_info.device.type == "cuda"
    train_loader = DataLoader(train_set, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, num_workers=config.workers, pin_memory=pin,
                              persistent_workers=config.workers > 0)
    if len(train_loader) == 0:
        raise HwsimError(f"batch_size {config.batch_size} is larger than the {len(train_set)} training images")
    val_loader = DataLoader(val_set, batch_size=max(per_rank_batch, 256), shuffle=False)

    optimizer = build_optimizer(config, model)
    epochs = algorithm.loop_epochs(config.epochs)  # Free: ceil(E / m) passes over the data
    scheduler = _scheduler(config, optimizer, epochs, len(train_loader))
    per_batch_schedule = config.schedule == "cyclic"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else contextlib.nullcontext
    ctx = StepContext(net=net, model=model, optimizer=optimizer, scaler=scaler, autocast=autocast,
                      widths=widths, epochs=epochs, world_size=dist_info.world_size,
                      set_knobs=_models.knobs if hasattr(model, "hwsim_knobs") else None)
    hooks: list[Hooks] = [algorithm, *extensions]
    ctx.hooks = hooks
    for hook in hooks:
        hook.setup(ctx)

    ckpt_dir = out / "checkpoints"
    start_epoch, best_ra = 0, -1.0
    if resume:
        ckpt = checkpoint.load(ckpt_dir / f"{resume_from}.pt", other=None if resume_from == "best" else
                               "--resume-from best")
        if ckpt.get("stopped"):
            raise HwsimError(f"run {out} stopped early ({ckpt['stopped']}); nothing to resume")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        for hook, state in zip(hooks, ckpt.get("hooks", [])):  # format 1: no hook state
            hook.load_state_dict(state)
        start_epoch, best_ra = int(ckpt["epoch"]), float(ckpt["best_ra"])
        if dist_info.world_size == 1:
            checkpoint.set_rng_state(ckpt["rng"])
        else:  # the saved state is rank 0's; give each rank its own continuation
            seed_everything(config.seed + dist_info.rank + 1000 * start_epoch)
    elif dist_info.main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        _write_config(config, out, dist_info)
    if dist_info.main and resume:
        _truncate_metrics(out / METRICS_FILE, start_epoch)

    last_epoch = epochs if stop_after is None else min(epochs, start_epoch + stop_after)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if epoch == start_epoch + 1 or any(isinstance(e, SparseLearning) for e in extensions):
            macs = macs_per_image(model, widths)  # masks move between epochs, so channel-pruned MACs do too
        model.train()
        ctx.new_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), dtype=torch.float64, device=dist_info.device)
        steps = 0
        start = time.perf_counter()
        for step, (images, labels) in enumerate(progress(train_loader, dist_info.main, desc=f"epoch {epoch}")):
            ctx.step_index = step
            x = data.augment(images.to(dist_info.device, non_blocking=True), flip=source.flip)
            y = labels.to(dist_info.device, non_blocking=True)
            if use_amp:
                x = x.contiguous(memory_format=torch.channels_last)
            loss_sum += algorithm.train_step(ctx, x, y).to(loss_sum.device)
            steps += 1
            if per_batch_schedule:
                scheduler.step()
        if dist_info.device.type == "cuda":
            torch.cuda.synchronize(dist_info.device)
        epoch_time = time.perf_counter() - start
        extra: dict[str, Any] = {}
        for hook in hooks:
            extra.update(hook.end_epoch(ctx, epoch))
        if not per_batch_schedule:
            scheduler.step()
        ledger = ctx.ledger.totals()
        counts = [float(ledger[k]) for k in LEDGER_FIELDS] + [float(ctx.ledger.train_macs(macs))]
        totals = _all_reduce_sum(torch.tensor([float(loss_sum), float(steps), *counts], dtype=torch.float64,
                                              device=dist_info.device), dist_info)
        train_loss = float(totals[0] / totals[1])
        cost = {k: int(v) for k, v in zip((*LEDGER_FIELDS, "train_macs"), totals[2:].tolist())}
        cost["optimizer_steps"] = ledger["optimizer_steps"]  # every rank takes the same (synchronised) steps
        _sync_buffers(model, dist_info)

        if dist_info.main:
            by_width = validate(model, algorithm, val_loader, dist_info.device, show=True, widths=widths)
            ca, ra = by_width[max(widths)]
            stopped = ctx.stop_reason
            improved = ra > best_ra and not stopped
            if stopped and (ckpt_dir / "last.pt").exists():  # keep the previous epoch's weights as best
                os.replace(ckpt_dir / "last.pt", ckpt_dir / "best.pt")
            best_ra = max(best_ra, ra) if not stopped else best_ra
            state = {"format": checkpoint.FORMAT, "epoch": epoch, "best_ra": best_ra, "ra": ra, "ca": ca,
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                     "hooks": [hook.state_dict() for hook in hooks], "stopped": stopped or "",
                     "rng": checkpoint.rng_state(), "config": config.to_dict()}
            checkpoint.save_atomic(state, ckpt_dir / "last.pt")
            if improved:
                checkpoint.save_atomic(state, ckpt_dir / "best.pt")
            images_seen = steps * per_rank_batch * dist_info.world_size
            record = {"epoch": epoch, "train_loss": train_loss, "ca": ca, "ra": ra,
                      "epoch_time_s": epoch_time, "images_per_s": images_seen / epoch_time, "lr": lr,
                      "images": images_seen, **cost,
                      "macs_per_image": {f"{w:g}": macs[w] for w in widths}, **extra}
            if len(widths) > 1:
                record["ca_by_width"] = {f"{w:g}": v[0] for w, v in by_width.items()}
                record["ra_by_width"] = {f"{w:g}": v[1] for w, v in by_width.items()}
            if stopped:
                record["stopped"] = stopped
            with (out / METRICS_FILE).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            _log_epoch(record, epochs)
            if stopped:
                print(f"stopping: {stopped}; best.pt holds epoch {epoch - 1}", file=sys.stderr, flush=True)
        _barrier(dist_info)
        if ctx.stop_reason:
            break
    return out


def train_from_options(values: dict[str, Any], out: str | Path, *, config_file: str | Path | None = None,
                       resume: bool = False, stop_after: int | None = None) -> Path:
    """Merge defaults < config file < ``values`` (explicit options), validate, and :func:`train`."""
    from hwsim.train.config import load_config_file

    merged: dict[str, Any] = {}
    source = "options"
    if config_file is not None:
        merged.update(load_config_file(config_file))
        source = str(config_file)
    merged.update(values)
    config = make_config(merged, source=source, given=True)
    return train(config, out, resume=resume, stop_after=stop_after)
