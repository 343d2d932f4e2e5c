# trading-engine: the engine and the exchange simulator in one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY trading_engine ./trading_engine
COPY strategies ./strategies
COPY config ./config
# The core compiles to C (mypyc) at install: a compiler and the Python
# headers for the build only, removed in the same layer. The build fails
# rather than fall back to the pure build: the image must run compiled.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && (cd / && python -c "import trading_engine as t; assert t.compiled, t.BUILD") \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 trader \
    && chown -R trader /app
USER trader

# Feed port, admin API (metrics, health), exchange simulator API.
EXPOSE 7001 9100 8080

# The slim image has no curl: ask /healthz with Python's standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRADING_ENGINE__ADMIN__PORT', '9100') + '/healthz', timeout=2)" || exit 1

CMD ["trading-engine", "run", "--config", "/app/config/engine.toml"]
