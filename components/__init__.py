"""Pulumi components of modelship: model store, registry, cluster, model image and model service.

Each is a ``ComponentResource`` with a typed Args dataclass; none reads Pulumi config. Import the
classes from here or from their modules.
"""

from components.cluster import KubernetesCluster, KubernetesClusterArgs
from components.image import ModelImage, ModelImageArgs
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.service import DnsZoneArgs, ModelService, ModelServiceArgs
from components.store import ModelStore, ModelStoreArgs

__all__ = [
    "ContainerRegistry",
    "ContainerRegistryArgs",
    "DnsZoneArgs",
    "KubernetesCluster",
    "KubernetesClusterArgs",
    "ModelImage",
    "ModelImageArgs",
    "ModelService",
    "ModelServiceArgs",
    "ModelStore",
    "ModelStoreArgs",
]
