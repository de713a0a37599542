# Headless OptiInfra: worker pool + scheduler. Configure with REDIS_URL, DATABASE_URL,
# CLICKHOUSE_URL and provider keys (VULTR_API_KEY); see README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPTIINFRA_HOME=/data

WORKDIR /app
COPY pyproject.toml README.md huey_config.py ./
COPY optiinfra_tui ./optiinfra_tui
# No [embedded] extra (chDB, pyarrow, pandas, numpy: ~830 MB): the image writes to a
# ClickHouse server named by CLICKHOUSE_URL.
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 optiinfra \
    && mkdir -p /data && chown optiinfra /data

USER optiinfra
VOLUME ["/data"]
# `status --json` exits non-zero when a backend is down.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s CMD ["optiinfra-tui", "status", "--json"]
STOPSIGNAL SIGTERM
CMD ["optiinfra-tui", "--headless", "--log-format", "json"]
