# aws-s3-service image: the API and the SQS consumer in one process (SPEC 8).
#
#   docker build -t aws-s3-service .
#   docker run --read-only --tmpfs /tmp -p 8000:8000 --env-file .env aws-s3-service
#
# Base image: Python 3.12 on Debian bookworm, pinned by patch tag AND digest (the digest wins; the tag
# says what it is). Bump both together; the new digest comes from
#   docker buildx imagetools inspect python:3.12.12-slim-bookworm
# Both stages start from this one pin, so the venv's interpreter is the runtime's interpreter.
FROM python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1


# --- builder: a virtualenv with the pinned runtime dependencies, wheels only ---------------------
FROM base AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# Every dependency ships a manylinux wheel for CPython 3.12 (x86_64 and aarch64), so no compiler is
# installed anywhere: --only-binary makes a missing wheel fail the build instead of pulling in gcc.
# The lake's libraries (requirements-lake.txt: pyiceberg, pyarrow; ~150 MB) go in unless
# --build-arg LAKE_INSTALL=false: the service imports them only when LAKE_WAREHOUSE is set.
ARG LAKE_INSTALL=true
COPY requirements.txt requirements-lake.txt constraints.txt /build/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip==25.3 \
    && /opt/venv/bin/pip install --only-binary=:all: -r /build/requirements.txt -c /build/constraints.txt \
    && if [ "$LAKE_INSTALL" = "true" ]; then \
        /opt/venv/bin/pip install --only-binary=:all: -r /build/requirements-lake.txt -c /build/constraints.txt; \
    fi \
    && /opt/venv/bin/pip uninstall --yes pip

# The application, byte-compiled here: the runtime root filesystem is read-only and
# PYTHONDONTWRITEBYTECODE=1, so nothing is compiled at start-up. unchecked-hash .pyc files are used
# without looking at source timestamps (the image never changes).
COPY app/ /srv/app/
RUN python -m compileall -q --invalidation-mode unchecked-hash /srv/app /opt/venv/lib


# --- runtime: the venv and app/ only, as UID/GID 1000 -------------------------------------------
FROM base AS runtime

ARG APP_VERSION=dev
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="aws-s3-service" \
      org.opencontainers.image.description="REST API over S3/SNS/PostgreSQL and an SQS file-ingestion consumer" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}"

RUN groupadd --system --gid 1000 app \
    && useradd --system --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /srv/app /srv/app

# HOME points at /tmp (the one writable path: a tmpfs under a read-only root) for any library that
# wants a home directory; nothing is written by the service itself. PYTHONPATH keeps `python -m app`
# working whatever the working directory (a Helm command or ECS override may not keep WORKDIR).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONPATH=/srv \
    HOME=/tmp

WORKDIR /srv
USER 1000:1000
EXPOSE 8000

# Liveness only (/health touches nothing external). Readiness (/ready) belongs to the orchestrator's
# readiness probe / target group health check. No curl in slim images: the stdlib does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

# uvicorn runs in-process as PID 1 (exec form, no shell), so SIGTERM reaches it: it stops accepting
# requests, the lifespan drains the consumer (SHUTDOWN_GRACE_SECONDS, 20 s by default) and the
# process exits inside --graceful-timeout 25. Keep the platform's grace above that (compose
# stop_grace_period 30s, ECS stopTimeout, pod terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000", "--forwarded-allow-ips=*", "--graceful-timeout", "25"]
