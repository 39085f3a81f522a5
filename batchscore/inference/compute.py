"""What runs: device, matmul precision, batch plan and truncation, decided by ONE rule for the local
engine, the Ray actors and the Python API. Outputs record what ran, so these are the values a resumed
output is checked against, whichever engine wrote it."""

from __future__ import annotations

from dataclasses import dataclass

from batchscore.base.errors import NoGpu
from batchscore.inference.batching import GPU_BUCKETS, BucketSpec
from batchscore.inference.device import (
    choose_precision,
    cpu_flags,
    cpu_precision,
    enable_compilation_cache,
    pick_devices,
)
from batchscore.inference.forward import Truncation
from batchscore.model.bundle import Bundle


@dataclass(frozen=True)
class ComputePlan:
    platform: str  # "cpu" or "gpu"
    precision: str  # the matmul precision that runs (a bfloat16 request may run as float32)
    buckets: BucketSpec  # the batch plan that runs
    description: str  # the run summary's compute line
    devices: tuple = ()  # this process's JAX devices (empty when the work runs elsewhere)


def batch_plan(platform: str, requested: BucketSpec) -> BucketSpec:
    """The default batch sizes are CPU sizes: a GPU gets far bigger batches unless sizes were given."""
    return GPU_BUCKETS if platform == "gpu" and requested == BucketSpec() else requested


def local_plan(device: str, precision: str, requested: BucketSpec) -> ComputePlan:
    """The devices of this process (and the persistent compilation cache turned on for them)."""
    enable_compilation_cache()
    devices = pick_devices(device)
    platform = devices[0].platform
    runs, description = choose_precision(precision, devices[0])
    if len(devices) > 1:
        description += f", {len(devices)} host devices"
    return ComputePlan(platform, runs, batch_plan(platform, requested), description, tuple(devices))


CPUS_PER_ACTOR = 2  # a CPU actor's share of a node: it splits its batches over this many host devices


def actor_plan(
    resources: dict, device: str, precision: str, requested: BucketSpec
) -> tuple[ComputePlan, int]:
    """The plan for a Ray cluster with these resources (ray.cluster_resources()), and how many actors:
    one per GPU, else one per CPUS_PER_ACTOR CPUs. CPU actors run the precision the driver's CPU can run, so
    every actor of a run, and a resume on the local engine, compute the same way."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if device == "gpu" and not gpus:
        raise NoGpu("--device gpu: the Ray cluster has no GPUs")
    platform = "gpu" if gpus and device != "cpu" else "cpu"
    runs = precision if platform == "gpu" else cpu_precision(precision, cpu_flags())[0]
    actors = gpus if platform == "gpu" else max(1, cpus // CPUS_PER_ACTOR)
    description = f"ray: {actors} {platform} actor(s), {runs}"
    return ComputePlan(platform, runs, batch_plan(platform, requested), description), actors


def truncation_for(bundle: Bundle, max_tokens: int | None) -> Truncation:
    """The bundle's truncation, or a shorter one asked for: the head keeps its share of the length."""
    max_tokens = max_tokens or bundle.max_tokens
    head = min(bundle.head_tokens, max_tokens // 4) if max_tokens < bundle.max_tokens else bundle.head_tokens
    return Truncation(max_tokens, head)
