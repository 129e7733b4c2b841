"""Prefect flows: thin orchestration over physml functions (one task = one physml call)."""

import os

# Prefect's ephemeral API server (no PREFECT_API_URL set) must answer within 20 s by default, which a loaded
# 2-core machine misses ("Timed out while attempting to connect to ephemeral Prefect API server", seen while a
# training shared the cores); set before prefect is imported, since it reads its settings then
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
