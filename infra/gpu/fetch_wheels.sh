#!/usr/bin/env bash
# Download, into .whl/ (in .gitignore), the wheels that physml's CLI needs and that the device tool's GPU
# machine lacks (it has no network; its python3 is 3.12 with a CUDA torch, numpy, scipy, pandas, h5py,
# matplotlib, pyyaml, tqdm, pytest): pydantic, pandera and ruamel.yaml (physml.config reads params.yaml with
# it, as DVC does). pandera imports typing_inspect (which needs mypy_extensions): they are fetched too, since
# nothing says that machine has them. Versions are this checkout's .venv ones, so the GPU run
# validates params.yaml and the data contracts exactly as here. Run here, in the repository root:
#   bash infra/gpu/fetch_wheels.sh      then carry ".whl" with the device call (infra/gpu/check.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
packages=(pydantic pydantic-core annotated-types typing-inspection typing-extensions pandera typeguard typing-inspect
          mypy-extensions ruamel.yaml)
mkdir -p .whl
for name in "${packages[@]}"; do
  version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))")
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
done
ls -l .whl
