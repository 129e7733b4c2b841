"""Prefect flows: thin orchestration over physml functions (one task = one physml call)."""
