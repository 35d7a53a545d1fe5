# genai-collector: the daemon in a virtual environment, run as a non-root user, data under /data.
#
#   docker build -t genai-collector .
#   docker run -p 4317:4317 -p 4318:4318 -p 8888:8888 -v genai-data:/data genai-collector
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+), its venv module, and useradd: the official
# slim image by default, or Debian's own python3 and python3-venv (tests/deploy/test_image.py builds one).
# The dashboard is built in a Node stage (DASHBOARD=node); a builder that cannot pull a Node image can take the
# build `make dashboard` made in collector/query/ui instead (DASHBOARD=prebuilt; tests/deploy/test_image.py does).
ARG BASE_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:20-slim
ARG DASHBOARD=node

FROM ${NODE_IMAGE} AS dashboard-node
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY dashboard ./
# vite writes the build to ../collector/query/ui
RUN npm run build

FROM scratch AS dashboard-prebuilt
COPY collector/query/ui /src/collector/query/ui

FROM dashboard-${DASHBOARD} AS dashboard

FROM ${BASE_IMAGE} AS build
# pip reads these from the environment when they are given: a private index or mirror, and the CA bundle
# of a TLS-intercepting proxy (mount the file into the build, e.g. `buildah build -v CA:CA:ro`).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY --from=dashboard /src/collector/query/ui /tmp/ui
RUN rm -rf collector/query/ui && mv /tmp/ui collector/query/ui && test -f collector/query/ui/index.html \
    && /opt/venv/bin/python3 -m pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/venv/bin/python3 -m pip uninstall --yes --quiet pip setuptools \
    && /opt/venv/bin/genai-collector --version

FROM ${BASE_IMAGE}
ARG UID=10001
RUN groupadd --gid "${UID}" collector \
    && useradd --uid "${UID}" --gid "${UID}" --home-dir /data --no-create-home --no-log-init \
        --shell /usr/sbin/nologin collector \
    && mkdir -p /data \
    && chown "${UID}:${UID}" /data
COPY --from=build /opt/venv /opt/venv

# The endpoints listen on every interface inside the container. These variables outrank a config file
# (flag > environment > file), so change them with `-e`; everything else can come from either.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    GENAI_COLLECTOR_DB=/data/genai-collector.db \
    GENAI_COLLECTOR_GRPC_ENDPOINT=0.0.0.0:4317 \
    GENAI_COLLECTOR_HTTP_ENDPOINT=0.0.0.0:4318 \
    GENAI_COLLECTOR_ADMIN_ENDPOINT=0.0.0.0:8888
# A config file: mount it (e.g. at /etc/genai-collector/config.yaml) and set GENAI_COLLECTOR_CONFIG to its path.

USER ${UID}:${UID}
WORKDIR /data
VOLUME /data
EXPOSE 4317 4318 8888

# Liveness on the admin port the environment names (no curl in slim images).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; port = os.environ['GENAI_COLLECTOR_ADMIN_ENDPOINT'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["genai-collector"]
CMD ["serve"]
