"""Baseline: the original system's design — a synchronous endpoint that decodes and predicts one
image per request inside the web process. For `skuai bench` only, never for serving."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request

from shared.images import decode


def create_app(registry: Path, precision: str = "fp32") -> Flask:
    """A Flask app with the active cascade loaded in-process."""
    from training.cascade import Cascade
    from training.registry import Registry

    reg = Registry(registry)
    version = reg.require_active()
    cascade = Cascade.load(reg.path(version), version=version, precision=precision)
    app = Flask("skuai-sync-baseline")

    @app.post("/predict")
    def predict() -> Response:
        pixels = decode(
            request.files["image"].read(), size=cascade.input_size, max_pixels=50_000_000
        )
        return jsonify(cascade.predict(np.expand_dims(pixels, 0))[0])

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    """`python -m skuai.bench.sync_server --registry DIR --port P` (one process, threaded)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    create_app(args.registry, args.precision).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
