# One image for every spotmatch process: `spotmatch shard ...`, `spotmatch router ...`,
# `spotmatch controller ...`, `spotmatch ctl ...`. Configuration comes from flags or the
# SPOTMATCH_* environment variables each command's --help lists; the image holds no secrets
# (mount the credentials and cluster-token files, decision 0018).
# Checked in CI without a Docker engine: hadolint, and tests/test_dockerfile.py (every COPY
# source exists, every package is copied, the build stage's commands work, the entrypoint
# is the console script).
# Two stages: the first has a compiler and compiles the hot path with mypyc (decision 0021)
# into the wheel it installs; the image gets only that virtualenv.
FROM python:3.11-bookworm AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/spotmatch
COPY pyproject.toml constraints.txt ./
COPY api/ api/
COPY cluster/ cluster/
COPY marketdata/ marketdata/
COPY matching/ matching/
COPY persistence/ persistence/
COPY router/ router/
COPY shard/ shard/
COPY spotmatch/ spotmatch/
COPY telemetry/ telemetry/
COPY tools/ tools/
# Compile in the source tree, install it (the wheel carries the extensions), then check the
# installed copy (-P: not the source tree in the working directory) is compiled and fresh.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install -c constraints.txt -e '.[compile]' \
    && /opt/build/bin/python -m tools.hot_path \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/python -P -m tools.hot_path --check

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

COPY --from=build /opt/venv /opt/venv
RUN useradd --system --no-create-home --uid 10001 spotmatch

USER 10001
# Router gRPC (7001) and shard gRPC (7101) defaults.
EXPOSE 7001 7101
ENTRYPOINT ["spotmatch"]
CMD ["--help"]
