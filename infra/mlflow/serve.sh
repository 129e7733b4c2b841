#!/usr/bin/env bash
# Start an MLflow tracking + registry server with a database backend and a proxied artifact store.
# Used as the entry command of docker-compose.yaml and k8s.yaml; also runs as-is on a VM:
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:secret@db:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://physml-mlflow/artifacts infra/mlflow/serve.sh
# Clients then set PHYSML_TRACKING_URI=http://<host>:5000 (physml.tracking reads it).
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://user:pass@host:5432/mlflow}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. s3://bucket/mlflow or gs://bucket/mlflow}"
HOST="${MLFLOW_HOST:-0.0.0.0}"
PORT="${MLFLOW_PORT:-5000}"
WORKERS="${MLFLOW_WORKERS:-2}"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1

# The database driver and the object-store client are not in the base mlflow install.
if [[ "${MLFLOW_INSTALL_EXTRAS:-1}" == "1" ]]; then
    pip install --quiet --no-cache-dir psycopg2-binary boto3 google-cloud-storage
fi

# --serve-artifacts: clients upload through the server, so they need no bucket credentials.
# --allowed-hosts: MLflow 3 rejects unknown Host headers; list the names clients use.
exec mlflow server \
    --backend-store-uri "${MLFLOW_BACKEND_STORE_URI}" \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION}" \
    --serve-artifacts \
    --host "${HOST}" \
    --port "${PORT}" \
    --workers "${WORKERS}" \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:${PORT},127.0.0.1:${PORT},mlflow,mlflow:${PORT},mlflow.physml.svc.cluster.local:${PORT}}"
