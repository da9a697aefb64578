# The worker image: `docker run IMAGE` runs `runner worker` against RUNNER_REDIS_URL.
# Two stages: the build stage installs the pinned, hashed dependencies (requirements.lock,
# made by pip-compile --generate-hashes; CI installs requirements-dev.lock the same way)
# and runner itself into a virtualenv; the runtime stage gets that virtualenv and tini.
# tests/e2e/test_container.py runs this ENTRYPOINT + CMD as PID 1 of a PID namespace.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/runner
WORKDIR /src
COPY requirements.lock ./
# Every dependency pinned by version and hash: a changed or unknown file fails the build.
RUN /opt/runner/bin/pip install --require-hashes --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY workers ./workers
# runner itself, built with the locked setuptools (no unpinned build environment).
RUN /opt/runner/bin/pip install --no-deps --no-build-isolation .

FROM python:3.11-slim
# tini as PID 1 reaps the processes tools leave behind and passes SIGTERM on to the
# worker, which hands its turn off within RUNNER_SHUTDOWN_GRACE. Debian's package, the
# one version of the release the base image is built on.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 runner \
 && mkdir -p /data/workspaces \
 && chown -R 10001:10001 /data
COPY --from=build /opt/runner /opt/runner
ENV PATH=/opt/runner/bin:$PATH \
    RUNNER_WORKSPACE_ROOT=/data/workspaces \
    RUNNER_DATA_DIR=/data \
    RUNNER_HEALTH_FILE=/tmp/runner-worker.health \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /data
STOPSIGNAL SIGTERM
# Asks the worker itself: healthy while its loop rewrites RUNNER_HEALTH_FILE (idle,
# running a turn, or riding out a Redis outage), not merely while its process exists.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["runner", "worker", "--health"]
# Give `docker stop -t` (or terminationGracePeriodSeconds) at least grace + 5 s.
ENTRYPOINT ["/usr/bin/tini", "--", "runner"]
CMD ["worker"]
