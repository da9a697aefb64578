# The worker image: `docker run IMAGE` runs `runner worker` against RUNNER_REDIS_URL.
FROM python:3.11-slim

# tini as PID 1 reaps the processes tools leave behind and passes SIGTERM on to the
# worker, which hands its turn off within RUNNER_SHUTDOWN_GRACE.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 runner

WORKDIR /app
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY workers ./workers
# Every provider extra (runner/providers.py): a worker can run any model spec.
RUN pip install --no-cache-dir '.[openai,serve,workspace,metrics,tracing]' \
 && mkdir -p /data/workspaces && chown -R runner /data

USER runner
ENV RUNNER_WORKSPACE_ROOT=/data/workspaces \
    RUNNER_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
# Give `docker stop -t` (or terminationGracePeriodSeconds) at least grace + 5 s.
ENTRYPOINT ["/usr/bin/tini", "--", "runner", "worker"]
