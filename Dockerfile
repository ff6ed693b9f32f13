# syntax=docker/dockerfile:1
#
# rmm-stream container image.
#
#   docker build -t rmm-stream:0.1.0 .
#   docker run --rm rmm-stream:0.1.0 --help
#
# Stage 1 ("build") turns pyproject.toml + stream/ into a wheel and collects
# wheels for every runtime dependency. Stage 2 ("runtime") installs only those
# wheels, offline, into a clean slim image: no compiler, no build backend, no
# source tree, no pip cache. All runtime dependencies publish manylinux wheels
# for CPython 3.11 on linux/amd64, so stage 1 needs no compiler either; other
# platforms (linux/arm64) may need `build-essential` added to stage 1 only.
#
# Pin the base image by version here; for reproducible production builds also
# pin it by digest (PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:...).

ARG PYTHON_VERSION=3.11.15
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore keeps tests, docs, deploy, caches and VCS data out of the
# context, so this copies the package, its metadata and the seed rules.
COPY . .

# One wheel for rmm-stream itself plus one per runtime dependency.
RUN pip wheel --wheel-dir /wheels . \
    && ls -l /wheels

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="rmm-stream" \
      org.opencontainers.image.description="Streaming detector of remote-management (RMM) tool abuse over Microsoft Defender XDR events" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Proprietary"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp

# Fixed numeric UID/GID so Kubernetes' runAsNonRoot can verify the user
# without reading /etc/passwd. No login shell, no home directory contents.
RUN groupadd --system --gid 10001 rmm \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin rmm

# Install from the wheels of stage 1 only (--no-index: nothing is fetched
# here). The bind mount keeps the wheels themselves out of every layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
    && rmm-stream --help >/dev/null

# Seed rules. With no --rules/RMM_STREAM_RULES/`rules:` the service looks in
# ./config/rules, so from this working directory the image runs as is; the
# Helm chart points `rules` at /etc/rmm-stream/rules/ when it mounts any.
COPY --from=build /src/config/rules/ /opt/rmm-stream/config/rules/

WORKDIR /opt/rmm-stream
USER 10001:10001

# /metrics, /healthz, /readyz (http_port, default 8080).
EXPOSE 8080
# The service drains and commits on SIGTERM.
STOPSIGNAL SIGTERM

ENTRYPOINT ["rmm-stream"]
CMD ["run", "--config", "/etc/rmm-stream/config.yaml"]
