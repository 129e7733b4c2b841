# physml worker image: CUDA build of torch + physml[pipeline] (+ the Kubernetes worker plugin).
#
#   docker build -f infra/worker.Dockerfile -t physml-worker:latest .      (from the repo root)
#
# The same image serves two roles on the cluster:
#   * the flow-run pod of the `paper` deployment (infra/k8s/gpu-work-pool.json sets it as `image`);
#   * the Prefect worker that submits those pods: `prefect worker start --pool physml-gpu --type kubernetes`.
# torch's CUDA wheels bundle the CUDA runtime; the node needs only the NVIDIA driver and device plugin.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# CUDA wheel index of the torch build; pick the cuXYZ that matches the cluster's driver.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_SPEC="torch==2.13.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PHYSML_PROJECT_DIR=/opt/physml \
    PREFECT_HOME=/opt/physml/.prefect

RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 physml

# 1. CUDA torch first, from its own index: physml asks only for a range (torch>=2.2,<3), so the
#    next step keeps this build instead of pulling the CPU wheel from PyPI.
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

# 2. physml with the pipeline extra (prefect, prefect-dask, dask, dvc) and the k8s worker plugin.
WORKDIR /opt/physml
COPY pyproject.toml README.md* params.yaml dvc.yaml dvc.lock* prefect.yaml* ./
COPY physml ./physml
COPY flows ./flows
RUN pip install ".[pipeline]" "prefect[kubernetes]" "dvc[s3,gs]" \
 && python -c "import torch, physml, prefect, dvc; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# Runs as an unprivileged user (uid 10001; the pool template sets runAsNonRoot), which owns the working
# directory the flow writes data, models, metrics and reports into, and PREFECT_HOME.
RUN mkdir -p "${PREFECT_HOME}" && chown -R physml:physml /opt/physml
USER 10001

# The `paper` deployment's pull step is set_working_directory: /opt/physml (prefect.yaml).
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["prefect", "worker", "start", "--pool", "physml-gpu", "--type", "kubernetes"]
