# syntax=docker/dockerfile:1
# passentry-bridge image. Two stages: the builder turns the sources into a wheel and installs it
# into a venv; the final stage gets only that venv (no compilers, no sources, no pip), runs as a
# non-root numeric user and never writes to its root filesystem.
#
#   docker build -t passentry-bridge:dev --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm --read-only --tmpfs /tmp passentry-bridge:dev --version

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency comes from requirements/runtime.lock with its hash, as wheels
# (--only-binary fails the build instead of compiling); the wheel of the bridge itself is
# built from the locked setuptools and installed without resolving anything again.
COPY requirements/runtime.lock requirements/build.lock ./requirements/
RUN python -m pip install --require-hashes --only-binary=:all: -r requirements/build.lock
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
COPY schemas ./schemas
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --require-hashes --only-binary=:all: \
       --no-compile -r requirements/runtime.lock \
    && python -m pip --python /opt/venv/bin/python install --no-deps --no-compile /wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib

FROM ${PYTHON_IMAGE}
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
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"
# The .pyc files were compiled in the builder; nothing is written at run time, so the root
# filesystem can be read-only. HOME points at /tmp, the only writable (emptyDir) path.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 9108
STOPSIGNAL SIGTERM
ENTRYPOINT ["passentry-bridge"]
CMD ["run"]
