"""Make the services the GPU machine lacks unimportable, for a dry run of infra/gpu/check.sh on a machine that
has them: ``PYTHONPATH=infra/gpu/without_services``. An import of mlflow, prefect, dvc or dask then fails as it
would there, so a stage that reaches for one of them shows up here first."""

import sys
from importlib.machinery import ModuleSpec

_ABSENT = ("mlflow", "prefect", "prefect_dask", "dvc", "dask", "distributed")


class _Absent:
    """A meta path finder that refuses the packages of ``_ABSENT`` (and their submodules)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name.split(".")[0] in _ABSENT:
            raise ImportError(f"{name} is not installed on the GPU machine (infra/gpu/without_services)")
        return None


sys.meta_path.insert(0, _Absent())
