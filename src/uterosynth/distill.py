"""Distil a trained diffusion model into a few-step student: reflow on the teacher's own couplings.

1. **Couplings** (Liu et al. 2023, "Flow Straight and Fast", reflow): the teacher samples
   ``pairs`` items with its own sampler (DPM-Solver++ 20 by default) and classifier-free
   guidance. Each keeps its initial noise ``z``, its sample ``x`` (in the teacher's sampling
   space: pixels or latents), its condition and the guidance scales it was drawn at (one draw
   per batch, uniform in each name's range). Classes are balanced as in ``uterosynth sample``.
2. **The student** (the teacher's UNet, initialised from its weights, plus a guidance
   embedding; :class:`~uterosynth.models.conditioning.GuidanceEmbedder`) learns the straight
   path between them: ``x_t = (1 - t/T) x + (t/T) z`` with target velocity ``x - z`` (objective
   ``rflow``), at the times its Euler sampler visits (``time_sampling: grid``) or at uniform times.
   It outputs the velocity, or (``prediction: sample``, the default for a pixel-space teacher) the
   clean sample ``x``, from which the sampler derives the velocity.
3. It samples with ``--sampler rflow`` in ``student_steps`` steps, one network pass per step:
   guidance is an input, not a second branch (Meng et al. 2023).

The couplings are written once into ``<out>/couplings/`` and reused when the run resumes. Under
``torchrun`` every rank samples its share of the couplings, rank 0 merges them, and the student
trains with DDP on the shared loop. The
student's ``model.json`` is the teacher's (space, autoencoder, geometry, conditioning and the
hashed training subjects, which it inherits) with the rectified-flow schedule and a
``distilled`` record (method, teacher, steps, guidance names, ranges and defaults).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from .core.artifacts import atomic_output_dir, write_json
from .core.config import StrictModel
from .core.distributed import DistInfo, barrier, init_distributed
from .core.errors import ConfigError, DataError
from .core.seeding import index_generator
from .diffusion.conditions import TEXT
from .diffusion.guidance import guided_denoiser
from .diffusion.samplers import SAMPLERS, SamplerConfig, build_sampler, initial_noise
from .diffusion.schedule import NoiseSchedule, NoiseScheduleConfig
from .models.diffusion import DiffusionModel, load_diffusion
from .models.diffusion_unet import ConditionedUNet, UNetConfig
from .sampling.plan import PlannedItem, plan_items
from .sampling.runtime import RuntimeConfig, inference_context, prepare_input, prepare_model
from .training.config import LoopConfig, OptimizerConfig
from .training.diffusion import DiffusionStep
from .training.loop import OptimGroup, Parts, Run, Trainer, make_adamw

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .training.loop import RunOptions

__all__ = ["DEFAULT_RANGE", "Couplings", "DistillConfig", "ReflowStep", "default_scale", "distill", "make_couplings",
           "merge_shards"]

DEFAULT_RANGE = (1.0, 7.0)
"""The guidance range of every categorical attribute when the config names none (covers the presets' 3-5)."""


class DistillConfig(StrictModel):
    """Everything ``uterosynth distill`` needs (see configs/distill.yaml)."""

    seed: int = 0
    method: Literal["reflow"] = "reflow"
    student_steps: int = Field(4, ge=1, le=64, description="Euler steps the student is made for")
    pairs: int = Field(2048, ge=1, description="teacher samples (noise, sample) to learn from")
    teacher_sampler: SamplerConfig = SamplerConfig()
    teacher_batch_size: int = Field(32, ge=1)
    guidance: dict[str, tuple[float, float]] | None = Field(
        None,
        description="guided name -> [low, high] scale range the student learns ('' for one scale); empty: the "
                    "teacher samples without guidance and the student takes none; unset: every categorical "
                    "attribute of the teacher over DEFAULT_RANGE")
    time_sampling: Literal["grid", "uniform"] = "grid"
    prediction: Literal["auto", "v_prediction", "sample"] = Field(
        "auto", description="what the student outputs: the flow's velocity, or the clean sample x0 (whose velocity "
                            "the sampler derives); auto: x0, for every teacher (a pixel-space velocity student drew "
                            "noise; the 2D LDM's x0 student met the bar: docs/BENCHMARKS.md)")
    init_from_teacher: bool = True
    runtime: RuntimeConfig = RuntimeConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4)
    train: LoopConfig = LoopConfig()

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        for name, (low, high) in (self.guidance or {}).items():
            if not 0 <= low <= high:
                raise ValueError(f"guidance {name or 'scale'}: expected 0 <= low <= high, got [{low}, {high}]")
        if self.guidance and "" in self.guidance and len(self.guidance) > 1:
            raise ValueError("guidance: give one scale ('') or per-name ranges, not both")
        if self.train.augment:
            raise ValueError("train.augment: the student learns the teacher's couplings as they are; set it to false")
        return self

    def for_teacher(self, teacher: DiffusionModel) -> DistillConfig:
        """This config with its guidance resolved and checked against the teacher.

        Raises:
            ConfigError: guidance for an unconditional teacher, or a name the teacher does not know.
        """
        if teacher.distilled is not None:
            raise ConfigError(f"teacher {teacher.checkpoint}: already a distilled student; distil its teacher "
                              f"({teacher.distilled['teacher']['path']})", keys=("teacher",))
        if SAMPLERS.get(self.teacher_sampler.name).stochastic:
            raise ConfigError(f"teacher_sampler.name={self.teacher_sampler.name}: a stochastic sampler; reflow needs "
                              "each sample to follow from its noise (use dpmpp, unipc or ddim)",
                              keys=("teacher_sampler.name",))
        guidance = self.guidance
        if guidance is None:
            guidance = {name: DEFAULT_RANGE for name in teacher.vocab.attributes}
            if teacher.vocab.prompt_attributes:  # a text-only teacher's classes are guided through its prompt
                guidance[TEXT] = DEFAULT_RANGE
        if guidance and teacher.codec is None:
            raise ConfigError("guidance: the teacher is unconditional; leave guidance empty", keys=("guidance",))
        for name in guidance:
            if name:
                teacher.vocab.check_name(name, what="guidance")
        prediction = self.prediction
        if prediction == "auto":
            prediction = "sample"
        return self.model_copy(update={"guidance": guidance, "prediction": prediction})

    def digest(self, teacher_sha256: str) -> str:
        """What the couplings depend on: the teacher and how it was sampled (a resumed run must not
        mix couplings of another teacher or config)."""
        keys = {"seed", "pairs", "teacher_sampler", "teacher_batch_size", "guidance"}
        record = {**self.model_dump(mode="json", include=keys), "teacher": teacher_sha256,
                  "precision": self.runtime.precision}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


class Couplings(Dataset):
    """The teacher's ``(noise, sample)`` pairs with their condition records and guidance scales."""

    def __init__(self, noise: torch.Tensor, sample: torch.Tensor, guidance: torch.Tensor,
                 conditions: Sequence[dict[str, Any]]) -> None:
        if not len(noise) == len(sample) == len(guidance) == len(conditions):
            raise DataError("couplings: noise, samples, guidance and conditions differ in length")
        self.noise, self.sample, self.guidance, self.conditions = noise, sample, guidance, list(conditions)

    def __len__(self) -> int:
        return len(self.noise)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"noise": self.noise[i], "sample": self.sample[i], "guidance": self.guidance[i], **self.conditions[i]}

    def save(self, folder: Path, digest: str, seconds: float) -> None:
        from safetensors.torch import save_file

        with atomic_output_dir(folder) as tmp:
            save_file({"noise": self.noise.contiguous(), "sample": self.sample.contiguous(),
                       "guidance": self.guidance.contiguous()}, str(tmp / "couplings.safetensors"))
            write_json(tmp / "couplings.json", {"digest": digest, "pairs": len(self), "seconds": round(seconds, 1),
                                                "conditions": self.conditions})

    @classmethod
    def load(cls, folder: Path, digest: str) -> Couplings | None:
        """The saved couplings, or ``None`` when there are none; refuses couplings of another config."""
        from safetensors.torch import load_file

        info_path = folder / "couplings.json"
        if not info_path.exists():
            return None
        info = json.loads(info_path.read_text())
        if info.get("digest") != digest:
            raise DataError(f"{folder}: couplings of another config (seed, pairs, teacher_sampler or guidance "
                            "changed); distil into a new folder, or use overwrite")
        tensors = load_file(str(folder / "couplings.safetensors"))
        return cls(tensors["noise"], tensors["sample"], tensors["guidance"], info["conditions"])


def _planned(teacher: DiffusionModel, pairs: int) -> list[PlannedItem]:
    """``pairs`` items balanced over the teacher's classes (or unconditional items)."""
    vocab = teacher.vocab
    if not vocab.categorical:
        return plan_items(vocab, n=pairs, per_class=None)
    n_classes = math.prod(len(v) for v in vocab.categorical.values())
    return plan_items(vocab, n=None, per_class=-(-pairs // n_classes))[:pairs]


def make_couplings(teacher: DiffusionModel, cfg: DistillConfig, device: torch.device,
                   on_batch: Callable[[int, int], None] | None = None, *, rank: int = 0, world: int = 1) -> Couplings:
    """Sample the teacher; keep each item's noise, sample, condition and scales.

    The ``cfg.pairs`` items form blocks of ``teacher_batch_size``; block ``b`` is sampled by rank
    ``b mod world`` (so :func:`merge_shards` of every rank's couplings is the same set whatever the
    number of processes). Item ``i`` starts from noise drawn by ``index_generator(seed, i,
    salt="distill")``; block ``b``'s scales are drawn by ``index_generator(seed, b, salt="distill-guidance")``.
    """
    cfg = cfg.for_teacher(teacher)
    sampler = build_sampler(cfg.teacher_sampler.name, teacher.schedule, spacing=cfg.teacher_sampler.spacing)
    unet = prepare_model(teacher.unet, cfg.runtime, device, spatial_dims=teacher.network_dims)
    items = _planned(teacher, cfg.pairs)
    names = list(cfg.guidance)
    size = cfg.teacher_batch_size
    blocks = list(range(rank, -(-len(items) // size), world))
    mine = sum(len(items[b * size:(b + 1) * size]) for b in blocks)
    noise, samples, scales, conditions = [], [], [], []
    for b in blocks:
        batch = items[b * size:(b + 1) * size]
        draws = index_generator(cfg.seed, b, salt="distill-guidance")
        drawn = {n: low + (high - low) * float(torch.rand((), generator=draws)) for n, (low, high) in cfg.guidance.items()}
        guidance = None if not names else drawn[""] if names == [""] else drawn
        cond = None
        if teacher.codec is not None:
            cond = teacher.codec.encode([it.condition for it in batch], device=device)
        z = initial_noise((len(batch), *teacher.sample_shape),
                          [index_generator(cfg.seed, it.index, salt="distill") for it in batch])
        with torch.no_grad(), inference_context(cfg.runtime, device, teacher.network_dims):
            x = sampler.sample(guided_denoiser(unet, cond, teacher.vocab, guidance), prepare_input(z, cfg.runtime, device),
                               steps=cfg.teacher_sampler.steps,
                               generators=[index_generator(cfg.seed, it.index, salt="distill-steps") for it in batch])
        noise.append(z)
        samples.append(x.float().cpu().contiguous())
        scales.append(torch.tensor([[drawn[n] for n in names]] * len(batch), dtype=torch.float32))
        conditions += [dict(it.condition) for it in batch]
        if on_batch is not None:
            on_batch(len(conditions), mine)
    if not blocks:  # more ranks than blocks: this rank samples nothing
        empty = torch.zeros((0, *teacher.sample_shape))
        return Couplings(empty, empty.clone(), torch.zeros((0, len(names))), [])
    return Couplings(torch.cat(noise), torch.cat(samples), torch.cat(scales), conditions)


def merge_shards(shards: Sequence[Couplings], block: int) -> Couplings:
    """The couplings in item order from every rank's shard (rank ``r`` holds blocks ``b ≡ r mod world``)."""
    pieces, taken, b = [], [0] * len(shards), 0
    while taken[b % len(shards)] < len(shards[b % len(shards)]):  # block b exists iff its rank has it left
        shard, start = shards[b % len(shards)], taken[b % len(shards)]
        end = min(start + block, len(shard))
        pieces.append((shard, slice(start, end)))
        taken[b % len(shards)] = end
        b += 1
    return Couplings(torch.cat([s.noise[i] for s, i in pieces]), torch.cat([s.sample[i] for s, i in pieces]),
                     torch.cat([s.guidance[i] for s, i in pieces]), [c for s, i in pieces for c in s.conditions[i]])


def _couplings(teacher: DiffusionModel, cfg: DistillConfig, out: Path, dist_info: DistInfo,
               on_batch: Callable[[int, int], None] | None) -> tuple[Couplings, float]:
    """The run's couplings (saved ones, or sampled by every rank and merged by rank 0) and their sampling seconds."""
    folder, digest = out / "couplings", cfg.digest(teacher.sha256)
    couplings = Couplings.load(folder, digest)
    if couplings is not None:
        return couplings, float(json.loads((folder / "couplings.json").read_text()).get("seconds", 0.0))
    t0 = time.perf_counter()
    mine = make_couplings(teacher, cfg, dist_info.device, on_batch, rank=dist_info.rank, world=dist_info.world_size)
    seconds = time.perf_counter() - t0
    if not dist_info.distributed:
        mine.save(folder, digest, seconds)
        return mine, seconds
    shard = out / f".couplings.rank{dist_info.rank}"
    shutil.rmtree(shard, ignore_errors=True)
    mine.save(shard, digest, seconds)
    barrier(dist_info)
    if dist_info.is_main:
        shards = [out / f".couplings.rank{r}" for r in range(dist_info.world_size)]
        merge_shards([Couplings.load(f, digest) for f in shards], cfg.teacher_batch_size).save(folder, digest, seconds)
        for f in shards:
            shutil.rmtree(f)
    barrier(dist_info)
    return Couplings.load(folder, digest), seconds  # type: ignore[return-value]


class ReflowStep(DiffusionStep):
    """The student's step: the teacher's coupling on the straight path, at grid or uniform times."""

    def __init__(self, schedule: NoiseSchedule, codec, *, grid: torch.Tensor | None) -> None:
        super().__init__(schedule, codec, drop_prob=0.0, min_snr_gamma=None)
        self.grid = grid

    def timesteps(self, n: int, device: torch.device) -> torch.Tensor:
        if self.grid is None:
            return self.schedule.sample_timesteps(n, device=device)
        return self.grid[torch.randint(len(self.grid), (n,))].to(device)

    def loss(self, phase: str, batch: dict[str, Any], parts: Parts, *, step: int, cache: dict[str, Any]):
        x0, eps = batch["sample"].float(), batch["noise"].float()
        n, device = x0.shape[0], x0.device
        t = self.timesteps(n, device)
        x_t = self.schedule.add_noise(x0, eps, t)
        target = self.schedule.training_target(x0, eps, t)
        cond = self.condition(batch, n, device, drop=False)
        if cond is not None and batch["guidance"].shape[1]:
            cond = cond.with_guidance(batch["guidance"])
        pred = parts["unet"](x_t, t, cond)
        mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
        return mse.mean(), {"model/mse": mse.mean().detach()}


def _check_resumed_student(out: Path, schedule: NoiseScheduleConfig, cfg: DistillConfig) -> None:
    """Refuse to resume a student whose checkpoint learned another output, step count or time sampling."""
    saved = Path(out) / "checkpoint" / "model.json"
    if not saved.is_file():
        return
    meta = json.loads(saved.read_text())
    before = (meta.get("schedule", {}).get("prediction_type"), meta.get("distilled", {}).get("student_steps"),
              meta.get("distilled", {}).get("time_sampling"))
    now = (schedule.prediction_type, cfg.student_steps, cfg.time_sampling)
    if before != now:
        raise DataError(f"{out}: its checkpoint is a student with prediction, steps and time sampling {list(before)}, "
                        f"not {list(now)}; resume it with its own settings, or start a new run (overwrite)",
                        keys=("overwrite",))


def student_schedule(teacher: DiffusionModel, prediction: str = "v_prediction") -> NoiseScheduleConfig:
    """The student's rectified-flow schedule over the teacher's number of timesteps."""
    return NoiseScheduleConfig(objective="rflow", prediction_type=prediction,
                               num_train_timesteps=teacher.schedule.num_train_timesteps)


def _student(teacher: DiffusionModel, cfg: DistillConfig, device: torch.device) -> ConditionedUNet:
    """The teacher's network plus a guidance embedding, from the teacher's weights when ``init_from_teacher``."""
    unet = ConditionedUNet(teacher.spatial_dims, int(teacher.meta["in_channels"]),
                           UNetConfig.model_validate(teacher.meta["network"]), teacher.codec,
                           guidance_names=list(cfg.guidance))
    if cfg.init_from_teacher:
        missing, unexpected = unet.load_state_dict(teacher.unet.state_dict(), strict=False)
        if unexpected or any(not k.startswith("guidance_embedder.") for k in missing):
            raise DataError(f"{teacher.checkpoint}: the teacher's weights do not fit its own network record")
    return unet.to(device)


_INHERITED = ("space", "spatial_dims", "network_dims", "in_channels", "sample_shape", "image_shape", "network", "conditioning",
              "scale_factor", "autoencoder", "geometry", "dataset", "attributes_available", "training_subjects")
"""What a student's ``model.json`` takes from its teacher's (its own provenance comes from the distillation run)."""


def default_scale(low: float, high: float) -> float:
    """A student's scale for a name ``--guidance`` leaves out: 1 (the teacher's conditional output, as
    for the teacher) where the trained range holds it, else the range's nearest end."""
    return min(max(1.0, low), high)


def _student_meta(teacher: DiffusionModel, teacher_path: str | Path, cfg: DistillConfig, schedule: NoiseScheduleConfig,
                  couplings_s: float) -> dict[str, Any]:
    meta = {k: teacher.meta[k] for k in _INHERITED if k in teacher.meta}
    ranges = {n: list(r) for n, r in cfg.guidance.items()}
    meta.update(
        kind="diffusion", schedule=schedule.model_dump(mode="json"),
        distilled={
            "method": cfg.method, "student_steps": cfg.student_steps, "sampler": "rflow",
            "time_sampling": cfg.time_sampling, "pairs": cfg.pairs, "couplings_seconds": round(couplings_s, 1),
            "teacher": {"path": str(Path(teacher_path).resolve()), "sha256": teacher.sha256,
                        "sampler": cfg.teacher_sampler.model_dump(mode="json"), "seed": teacher.meta.get("seed"),
                        "config": teacher.meta.get("config")},
            "guidance": {"names": list(cfg.guidance), "ranges": ranges,
                         "default": {n: default_scale(low, high) for n, (low, high) in cfg.guidance.items()}},
        },
    )
    return meta


def distill(cfg: DistillConfig, teacher_path: str | Path, out: str | Path, *,
            on_couplings: Callable[[int, int], None] | None = None, **options: Unpack[RunOptions]) -> dict[str, Any]:
    """Make a ``cfg.student_steps``-step student of the teacher in ``out`` (a diffusion run folder).

    ``options``: ``resume``, ``overwrite``, ``progress``, ``on_step_end`` (:class:`~.training.loop.RunOptions`).

    Raises:
        DataError: the teacher cannot be loaded; ``out`` exists without resume/overwrite;
            couplings of another config in a resumed run.
        ConfigError: guidance names the teacher does not know, or guidance for an unconditional teacher.
    """
    run = Run(Path(out), **options)
    dist_info = init_distributed(cfg.train.device)
    device = dist_info.device
    teacher = load_diffusion(teacher_path, device=device)
    cfg = cfg.for_teacher(teacher)
    run.start(cfg.train, cfg.seed, dist_info)
    schedule_cfg = student_schedule(teacher, cfg.prediction)
    _check_resumed_student(run.out, schedule_cfg, cfg)
    couplings, couplings_s = _couplings(teacher, cfg, run.out, dist_info, on_couplings)
    schedule = NoiseSchedule(schedule_cfg)
    grid = None
    if cfg.time_sampling == "grid":
        grid = build_sampler("rflow", schedule).timesteps(cfg.student_steps).float()
    unet = _student(teacher, cfg, device)
    teacher.unet.cpu()
    step = ReflowStep(schedule, teacher.codec, grid=grid)
    groups = [OptimGroup("model", make_adamw(unet.parameters(), cfg.optimizer, device=device,
                                                  total_steps=cfg.train.steps), ("unet",), cfg.optimizer.grad_clip)]
    trainer = Trainer(
        {"unet": unet}, groups, step, couplings, cfg=cfg.train, out=run.out, seed=cfg.seed, export="unet",
        model_meta=_student_meta(teacher, teacher_path, cfg, schedule_cfg, couplings_s), config=cfg,
        dist_info=dist_info, on_step_end=run.on_step_end, progress=run.progress,
    )
    return {**run.fit(trainer), "pairs": len(couplings), "couplings_seconds": round(couplings_s, 1),
            "student_steps": cfg.student_steps, "prediction": cfg.prediction}
