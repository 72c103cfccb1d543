# The dashboard server: tdx-contention serve on port 8000, runs kept in /data.
#
# Two stages: the first compiles the engine's hot modules with mypyc (about 5x the
# pure-Python speed, byte-identical records; docs/performance.md) into a wheel; the
# second installs that wheel (and librt, its runtime library) without a compiler or mypy.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
COPY app ./app
COPY static ./static
RUN pip install "mypy>=2.4" "setuptools>=68" wheel \
    && TDX_CONTENTION_MYPYC=1 pip wheel --no-build-isolation --no-deps -w /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
# The check fails the build if the engine came out uncompiled. The [dask] extra: the same
# image serves as the dask scheduler and workers of docker-compose.yml's `dask` profile.
RUN pip install "$(ls /wheels/*.whl)[dask]" \
    && rm -rf /wheels \
    && python -c "import engine.sim, sys; sys.exit(not engine.sim.COMPILED)" \
    && useradd --create-home --uid 10001 tdx \
    && mkdir /data && chown tdx:tdx /data

USER tdx
WORKDIR /home/tdx
VOLUME ["/data"]
EXPOSE 8000

# Bound to every interface inside the container, so a token is required:
# set TDX_CONTENTION_TOKEN (docker-compose.yml passes it through).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3).status != 200)"]

CMD ["tdx-contention", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
