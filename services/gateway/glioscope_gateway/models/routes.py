"""The versions of the segmentation model a job can run (model_repository/<model_name>/<n>/metadata.json)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from glioscope_common.model_metadata import model_versions, resolve_model_version
from glioscope_common.settings import CommonSettings
from glioscope_gateway.auth.deps import require
from glioscope_gateway.auth.principal import READ, Principal
from glioscope_gateway.deps import Container, container
from glioscope_gateway.models.schemas import ModelVersionOut

router = APIRouter(prefix="/api/models", tags=["models"])


def checked_model_version(settings: CommonSettings, version: str) -> str:
    """`version` when the model repository has it ("" stays "": the worker's default); an unknown
    version raises UnknownModelVersion (400) naming the available ones, before anything is queued."""
    if version:
        resolve_model_version(settings.model_repository / settings.model_name, version)
    return version


@router.get("", response_model=list[ModelVersionOut], summary="The model versions a job can run, oldest first")
def list_model_versions(principal: Principal = Depends(require(READ)),
                        c: Container = Depends(container)) -> list[ModelVersionOut]:
    versions = model_versions(c.settings.model_repository / c.settings.model_name)
    return [
        ModelVersionOut(
            name=v.metadata.name, version=v.metadata.version, triton_version=v.folder, newest=v is versions[-1],
            algorithm_name=v.metadata.algorithm_name, algorithm_version=v.metadata.algorithm_version,
            intended_use=v.metadata.intended_use, training_data=v.metadata.training_data,
            accuracy=v.metadata.accuracy_summary(),
        )
        for v in versions
    ]
