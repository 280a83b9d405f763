# syntax=docker/dockerfile:1
#
# logcanary container image.
#
#   make image     (docker build with the OCI labels filled in: version, revision, source)
#   docker build -t logcanary:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm -p 8080:8080 -v logcanary-state:/var/lib/logcanary logcanary:0.1.0
#
# Needs BuildKit (the default builder since Docker 23) for the cache and bind mounts.
# The state directory holds ONE SQLite file: run one container per state volume.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------
# Stage 1: build wheels for logcanary and its runtime dependencies only
# (no `dev` or `demo` extra), the dependencies from the lock: every version
# pinned and every file checked against its hash (requirements/runtime.lock,
# written by `make lock`), so two builds months apart install the same.
# ---------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build

# (PIP_NO_CACHE_DIR is left unset here: pip treats ANY value of it, even 0, as
# "no cache", which would defeat the cache mount below.)
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The lock first: its layer, and the wheels built from it, are reused until it changes.
# The postgres extra (psycopg) lets the image use LOGCANARY_STORE_URL=postgresql://...
COPY requirements/runtime.lock ./requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --require-hashes -r requirements/runtime.lock -w /wheels

# pyproject.toml names README.md as the readme, so setuptools needs it to build.
COPY pyproject.toml README.md ./
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps . -w /wheels

# ---------------------------------------------------------------------------
# Stage 2: runtime
# ---------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

# Which program this image is: `make image` passes the commit and the version (pyproject.toml's).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/logcanary/logcanary
LABEL org.opencontainers.image.title="logcanary" \
      org.opencontainers.image.description="Streaming log-anomaly verdicts for canary deployments" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LOGCANARY_HOST=0.0.0.0 \
    LOGCANARY_PORT=8080 \
    LOGCANARY_STATE_DIR=/var/lib/logcanary

# Fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify the user.
RUN groupadd --system --gid 10001 logcanary \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/logcanary --shell /usr/sbin/nologin logcanary \
    && mkdir -p /var/lib/logcanary \
    && chown 10001:10001 /var/lib/logcanary \
    && chmod 0750 /var/lib/logcanary

# Install from the wheels of stage 1 only (no index): the wheels are bind-mounted,
# so they never become a layer of this image. pip compiles the .pyc files here,
# which lets the container run with a read-only root filesystem. (DL3013, "pin versions in pip": --no-index sees
# only the wheels of stage 1, so the versions are those of this very build.)
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "logcanary[postgres]" \
    && logcanary --help > /dev/null \
    && python -c "from logcanary.api import docs; assert all((docs.ASSETS_DIR / n).is_file() for n in docs.ASSETS)"

WORKDIR /var/lib/logcanary
VOLUME ["/var/lib/logcanary"]

USER 10001:10001

EXPOSE 8080

# No curl in the slim image: probe /healthz with the standard library. A non-2xx
# answer raises HTTPError, a refused connection URLError: either exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOGCANARY_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["logcanary"]
CMD ["serve"]
