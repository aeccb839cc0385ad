# The core image: the HTTP API (gunicorn), and also Flower and the webhook worker, none of
# which need TensorFlow. Build from the repository root:
#   docker build -f deploy/api.Dockerfile -t skuai-api .
# Only classic-builder instructions are used (no BuildKit cache mounts or heredocs), so
# docker-compose 1.29 builds it too.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies get their own layer, keyed on setup.cfg alone, so editing code does not
# reinstall them. pip cannot install a setup.cfg project's dependencies without its
# packages, so they are read out of setup.cfg here; `pip install /src` below checks the
# result against the real metadata and fetches anything missed.
COPY setup.cfg /src/setup.cfg
RUN python -c "import configparser; c = configparser.ConfigParser(interpolation=None); c.read('/src/setup.cfg'); print(c['options']['install_requires'])" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . /src
RUN pip install /src


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SKUAI_HOME=/var/lib/skuai \
    SKUAI_REGISTRY=/registry

# The same UID in both images, so either can initialise the shared registry volume
# (Docker copies a mount point's owner into an empty named volume).
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/skuai \
        --shell /usr/sbin/nologin skuai \
    && install -d -o skuai -g skuai /var/lib/skuai /registry

# Only the virtual environment crosses over: no sources, build files or pip cache.
COPY --from=build /opt/venv /opt/venv

USER skuai
WORKDIR /home/skuai
EXPOSE 8000

# The slim base has no curl; Python's urllib raises (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

# The same command as compose's `web` service: gunicorn with gevent workers (skuai/serve.py).
CMD ["skuai", "api", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
