# The worker image: Celery inference workers and the trainer, with TensorFlow. Build from
# the repository root:
#   docker build -f deploy/worker.Dockerfile -t skuai-worker .                       # GPU
#   docker build -f deploy/worker.Dockerfile --build-arg SKUAI_EXTRA=cpu -t skuai-worker .
#
# Why python:3.11-slim and not nvidia/cuda: `tensorflow[and-cuda]` installs the CUDA and
# cuDNN libraries TensorFlow was built and tested against as pip wheels, and TensorFlow
# finds them itself. An nvidia/cuda base would carry a second CUDA that TensorFlow does
# not use (or, without the pip wheels, one whose cuDNN version must be matched by hand).
# The driver (libcuda) is not in any image: the NVIDIA Container Toolkit mounts the host's
# at run time. Without a GPU the same image runs on the CPU.
# Only classic-builder instructions are used, so docker-compose 1.29 builds it too.

FROM python:3.11-slim AS build

# gpu: tensorflow[and-cuda]; cpu: tensorflow-cpu (a much smaller image for CPU-only hosts).
ARG SKUAI_EXTRA=gpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies (gigabytes with CUDA) get their own layer, keyed on setup.cfg alone, so
# editing code does not reinstall them. pip cannot install a setup.cfg project's
# dependencies without its packages, so they are read out of setup.cfg here (an unknown
# extra fails the build); `pip install` below checks them against the real metadata.
COPY setup.cfg /src/setup.cfg
RUN python -c "import configparser, sys; c = configparser.ConfigParser(interpolation=None); c.read('/src/setup.cfg'); print(c['options']['install_requires']); print(c['options.extras_require'][sys.argv[1]])" "$SKUAI_EXTRA" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . /src
RUN pip install "/src[$SKUAI_EXTRA]"


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SKUAI_HOME=/var/lib/skuai \
    SKUAI_REGISTRY=/registry \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The same UID as the API image, so either can initialise the shared registry volume.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/skuai \
        --shell /usr/sbin/nologin skuai \
    && install -d -o skuai -g skuai /var/lib/skuai /registry

COPY --from=build /opt/venv /opt/venv

USER skuai
WORKDIR /home/skuai

# `skuai worker --name inference` makes the Celery node inference@<hostname>, and a
# container's hostname is its own, so this pings exactly this worker (a different --name
# needs a matching --health-cmd). Shell form, so $HOSTNAME expands at run time.
HEALTHCHECK --interval=30s --timeout=20s --start-period=120s --retries=3 \
    CMD celery -A worker.celery_app inspect ping --destination "inference@$HOSTNAME" --timeout 10 > /dev/null || exit 1

CMD ["skuai", "worker", "--queues", "interactive,inference", "--concurrency", "1", "--name", "inference"]
