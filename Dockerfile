# syntax=docker/dockerfile:1
# passentry-bridge image. Two stages: the builder turns the sources into a wheel and installs it
# into a venv; the final stage gets only that venv (no compilers, no sources, no pip of its own),
# runs as a non-root numeric user and never writes to its root filesystem.
#
#   make image          (scripts/image: docker with the official base, or podman on a local one)
#   docker build -t passentry-bridge:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm --read-only passentry-bridge:0.1.0 --version
#
# Any Debian-like base with python3.11 and its venv module will do (PYTHON_IMAGE); the
# builder uses only `python3 -m venv`, never the base's own pip, so Debian's externally
# managed python3 works as well as the official image's.

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The bridge's native modules (bridge/*/*.c) are compiled here, with Debian's gcc, against the
# base's Python headers (the official image has them; Debian's python3.11 needs its -dev).
# Unpinned (DL3008): the versions are the base's Debian release's, and none of it reaches the
# final stage.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && { test -e "$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" \
         || apt-get install -y -qq --no-install-recommends python3.11-dev >/dev/null; } \
    && rm -rf /var/lib/apt/lists/*
# Every dependency comes from requirements/runtime.lock with its hash, as wheels
# (--only-binary fails the build instead of compiling). The build tools go into a venv of
# their own (/opt/build) from build.lock; the runtime venv (/opt/venv) gets no pip at all.
# This layer changes only with the lock files.
COPY requirements/runtime.lock requirements/build.lock ./requirements/
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.lock \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes \
       --only-binary=:all: --no-compile -r requirements/runtime.lock
# The wheel of the bridge itself, built (native modules too) from the locked setuptools and
# installed without resolving anything again; then every module is compiled once, here.
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
COPY schemas ./schemas
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-compile /wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib

FROM ${PYTHON_IMAGE}
# Re-declared so the label below names the base this image was really built on.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="passentry-bridge" \
      org.opencontainers.image.description="Streams PassEntry pass scans into Kafka as Avro, exactly once." \
      org.opencontainers.image.source="https://github.com/passentry/passentry-bridge" \
      org.opencontainers.image.documentation="https://github.com/passentry/passentry-bridge/blob/main/docs/operations.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# The .pyc files were compiled in the builder; nothing is written at run time, so the root
# filesystem can be read-only, even without a writable /tmp. HOME points at /tmp, the chart's
# emptyDir, for libraries that want a home.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# /metrics, /healthz, /readyz (BRIDGE_HTTP_PORT); the webhook receiver (BRIDGE_WEBHOOK_PORT).
EXPOSE 9108 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["passentry-bridge"]
CMD ["run"]
