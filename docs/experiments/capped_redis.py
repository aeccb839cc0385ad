"""Issue 19's "Done when" at full size: a Redis capped at `maxmemory 64mb` and one batch of 2,000
distinct JPEGs of about 150 KB (about 290 MB in all) through the HTTP API, on the file blob store
and on a real S3 server (SeaweedFS `weed mini`). Each backend gets a fresh Redis, API process and
inference worker serving the tests' tiny cascade (trained here first, about a minute). Prints one
JSON line per backend: seconds, Redis' memory before and at its peak, and the results' counts;
exits 1 unless every image has exactly one result and the peak stayed under the cap. The test
suite runs the same thing scaled down (tests/test_capped_redis.py).

    python docs/experiments/capped_redis.py                      # 2,000 x 150 KB, 64 MB, both
    python docs/experiments/capped_redis.py --images 500 --backends s3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support, when run as a script from anywhere

from shared.settings import Settings  # noqa: E402
from tests.conftest import TINY, TINY_CASCADE  # noqa: E402
from tests.support.capped_redis import (  # noqa: E402
    MB,
    Backend,
    BatchRun,
    capped_stacks,
    noise_jpegs,
    run_batch,
    summary,
)
from tests.support.s3_server import BUCKET, S3Server  # noqa: E402


def train_tiny(folder: Path) -> tuple[Settings, str]:
    """The test session's tiny catalog and cascade, in `folder`; settings and its version."""
    from training.config import TrainConfig
    from training.registry import Registry
    from training.synth import synthesize
    from training.train import train

    settings = Settings(home=folder / "home", registry=folder / "registry")
    synthesize(folder / "catalog", **TINY)  # type: ignore[arg-type]
    config = TrainConfig(**TINY_CASCADE, epochs=2, precision="fp32")  # type: ignore[arg-type]
    return settings, train(folder / "catalog", Registry(settings.registry_dir), config).version


def passed(run: BatchRun) -> bool:
    """Every image has exactly one succeeded result, and Redis' peak stayed under the cap."""
    refs = sorted(r["ref"] for r in run.results)
    return (
        run.upload_status == 202
        and refs == sorted(f"{i}.jpg" for i in range(run.images))
        and all(r["status"] == "succeeded" and r["result"] for r in run.results)
        and run.peak < run.maxmemory
    )


def main() -> None:
    """Run the batch on each backend asked for and print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=150_000, help="bytes of one JPEG")
    parser.add_argument("--maxmemory-mb", type=int, default=64)
    parser.add_argument("--backends", default="file,s3")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="capped-redis-") as tmp:
        folder = Path(tmp)
        settings, version = train_tiny(folder)
        images = noise_jpegs(args.images, args.size)
        base = {**os.environ, **settings.env(), "TF_CPP_MIN_LOG_LEVEL": "2"}
        for backend in args.backends.split(","):
            spec, server = Backend(folder / backend, base), None
            if backend == "s3":
                server = S3Server.start(folder / "s3-server")
                spec = Backend(folder / backend, {**base, **server.env()}, f"s3://{BUCKET}/capped")
            try:  # one backend at a time: each measured alone
                cap = args.maxmemory_mb * MB
                with capped_stacks(settings, version, {backend: spec}, maxmemory=cap) as stacks:
                    run = run_batch(stacks[backend], images, timeout=1800)
            finally:
                if server is not None:
                    server.stop()
            ok = ok and passed(run)
            print(json.dumps({"backend": backend, "passed": passed(run), **summary(run)}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
