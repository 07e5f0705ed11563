"""Fan the shards of a generation out over a Ray cluster: one task per shard, one GPU per task.

Workers write straight into the output folder, so it must be shared storage (NFS, a mounted bucket) that
every node sees at the same path. Each task is an ordinary resumable shard: rerunning the same command
after a failure redoes only the missing images.
"""

from __future__ import annotations

from dataclasses import replace

from cifake.cluster import ray_session
from cifake.generate.pipeline import generate
from cifake.generate.plan import GenerateConfig


def _generate_shard(config: GenerateConfig) -> dict:
    return generate(config, progress=False)


def generate_on_ray(config: GenerateConfig, address: str | None, shards: int | None = None,
                    gpus_per_shard: float = 1.0) -> list[dict]:
    """Run shards 0..n-1 as Ray tasks (n: `shards`, or the cluster's GPU count); returns each shard's summary.

    `address` is a Ray cluster address ("auto", "ray://head:10001"); None or "local" starts Ray on this machine.
    """
    import ray  # the distributed extra: cifake runs without it

    with ray_session(address):
        count = shards or int(ray.cluster_resources().get("GPU", 0))
        if count < 1:
            raise ValueError("the Ray cluster has no GPUs, and generation runs one shard per GPU there; on CPUs, "
                             "split the work with --shard i/n (or call generate_on_ray with shards and "
                             "gpus_per_shard=0)")
        task = ray.remote(num_gpus=gpus_per_shard, max_retries=2)(_generate_shard)
        device = "cuda" if gpus_per_shard > 0 and config.device == "cpu" else config.device
        return ray.get([task.remote(replace(config, shard=(i, count), device=device)) for i in range(count)])
