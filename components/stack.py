"""The whole modelship stack: resource group, model store, registry, cluster, image and service.

``build_stack(settings, project_root)`` is what ``__main__.py`` calls and what
:func:`components.testing.run_stack` runs under mocks. It is deterministic given the settings and
the files under ``project_root``: the model is fetched by the pipeline *before* ``pulumi up``
(``modelship-models fetch NAME@VERSION app/model``) and only its manifest is read here. With no
model fetched yet the platform is still created and a warning says how to publish and fetch one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi
from pulumi_azure_native import resources

from components import sizing
from components.argo_rollouts import ArgoRollouts, ArgoRolloutsArgs
from components.build_spec import BuildSpec, make_build_spec, stage_contract
from components.cluster import KubernetesCluster, KubernetesClusterArgs
from components.deployer import resolve_principal_type
from components.image import ModelImage, ModelImageArgs
from components.image_sbom import ImageSbom, ImageSbomArgs
from components.image_test import ImageTest, ImageTestArgs
from components.monitoring import ManagedPrometheus, ManagedPrometheusArgs
from components.promotion import ImportedImage, ImportedImageArgs, Release, checked_image, release_of
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.release_trigger import ReleaseTrigger, ReleaseTriggerArgs, check_webhook_url
from components.service import CanaryArgs, DnsZoneArgs, ModelService, ModelServiceArgs
from components.store import ModelStore, ModelStoreArgs
from modelship_contract.manifest import MANIFEST_FILE, git_revision, is_alias_name

if TYPE_CHECKING:
    from settings import Settings


class ModelMismatchError(ValueError):
    """The fetched model is not the one the stack's config asks for."""


@dataclass(frozen=True)
class ModelChoice:
    """The outcome of looking at the model directory."""

    spec: BuildSpec | None
    """Build description; None when no model has been fetched."""
    reason: str = ""
    """Why there is no image (for the warning and the ``modelStatus`` output)."""


def resolve_revision(configured: str | None, project_root: Path) -> str:
    """Config ``revision``, else ``GITHUB_SHA``/``BUILD_SOURCEVERSION`` (12 chars), else git, else 'dev'."""
    if configured:
        return configured
    for var in ("GITHUB_SHA", "BUILD_SOURCEVERSION"):
        value = os.environ.get(var, "").strip()
        if value:
            return value[:12]
    return git_revision(project_root) or "dev"


def choose_model(settings: Settings, project_root: Path, revision: str) -> ModelChoice:
    """Read the fetched model's manifest; check it against ``modelName``/``modelVersion``."""
    model_dir = (project_root / settings.model_dir).resolve()
    if not (model_dir / MANIFEST_FILE).is_file():
        wanted = f"{settings.model_name}@{settings.model_version}"
        store = f"https://{settings.storage_account_name}.blob.core.windows.net"
        return ModelChoice(None, (
            f"no model in {settings.model_dir} ({MANIFEST_FILE} missing): the platform is created "
            f"but no image or service. Publish a model directory (e.g. `python -m training.train_digits "
            f"--out build/model --name {settings.model_name} --version 1.0.0`) with `modelship-models "
            f"publish build/model --account-url {store} --container {settings.model_container}`, "
            f"fetch it with `modelship-models fetch {wanted} {settings.model_dir} --account-url {store} "
            f"--container {settings.model_container}`, then run `pulumi up` again."
        ))
    stage_contract(project_root / "app")  # the build context must hold the contract package
    spec = make_build_spec(project_root / "app", revision=revision, base_image=settings.base_image,
                           model_dir=model_dir)
    manifest = spec.manifest
    if manifest.name != settings.model_name:
        raise ModelMismatchError(
            f"config key 'modelName' is {settings.model_name!r} but {settings.model_dir}/{MANIFEST_FILE} "
            f"holds model {manifest.name!r}; fetch the right model or change modelName"
        )
    # 'latest' and an alias ('production') name whatever version the fetch resolved them to.
    floating = settings.model_version == "latest" or is_alias_name(settings.model_version)
    if not floating and manifest.version != settings.model_version:
        raise ModelMismatchError(
            f"config key 'modelVersion' is {settings.model_version!r} but {settings.model_dir}/"
            f"{MANIFEST_FILE} holds version {manifest.version!r}; run `modelship-models fetch "
            f"{settings.model_name}@{settings.model_version} {settings.model_dir}` or set modelVersion"
        )
    return ModelChoice(spec)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class ModelshipStack(pulumi.ComponentResource):
    """Every resource of one modelship environment, as children of one component."""

    outputs: dict[str, pulumi.Input[object]]
    """Stack outputs (camelCase) for ``pulumi.export``."""

    def __init__(self, name: str, settings: Settings, project_root: Path, revision: str,
                 opts: pulumi.ResourceOptions | None = None):
        # A model that contradicts the config, or memory below what it needs, is a bad input:
        # fail before anything is registered.
        release = settings.release  # set exactly when promoteFrom is (Settings checks it)
        # A promoting stack (prod) never builds: it needs no model directory, only the release.
        choice = ModelChoice(None) if release else choose_model(settings, project_root, revision)
        if settings.release_webhook_url:
            check_webhook_url(settings.release_webhook_url, "releaseWebhookUrl")
        deployer = resolve_principal_type(settings.deployer_principal_type)
        model = ((release.model, release.model_version, release.model_size) if release else
                 None if choice.spec is None else
                 (choice.spec.manifest.name, choice.spec.manifest.version, choice.spec.manifest.size))
        sized = None if model is None else sizing.for_model(
            model[2], model=f"{model[0]}@{model[1]}",
            memory_request=settings.memory_request, memory_limit=settings.memory_limit,
            startup_seconds=settings.startup_seconds,
        )
        super().__init__("modelship:stack:Modelship", name, None, opts)
        self.resources: sizing.Resources | None = sized
        """Memory and start-up budget of the model server, derived from the model's size."""
        child = pulumi.ResourceOptions(parent=self)

        self.resource_group = resources.ResourceGroup(
            f"{name}-rg", resource_group_name=settings.resource_group_name,
            location=settings.location, opts=child,
        )
        rg = self.resource_group.name
        self.store = ModelStore(f"{name}-store", ModelStoreArgs(
            resource_group_name=rg, account_name=settings.storage_account_name,
            location=settings.location, container_name=settings.model_container,
            sku=settings.storage_sku, retention_days=settings.blob_retention_days,
            deployer_principal_type=deployer,
        ), opts=child)
        self.registry = ContainerRegistry(f"{name}-registry", ContainerRegistryArgs(
            resource_group_name=rg, registry_name=settings.registry_name,
            location=settings.location, sku=settings.registry_sku,
            deployer_principal_type=deployer,
        ), opts=child)
        self.cluster = KubernetesCluster(f"{name}-cluster", KubernetesClusterArgs(
            resource_group_name=rg, cluster_name=settings.cluster_name, location=settings.location,
            registry_id=self.registry.registry_id, kubernetes_version=settings.kubernetes_version,
            vm_size=settings.node_vm_size, min_count=settings.node_min_count,
            max_count=settings.node_max_count, network_policy=settings.network_policy,
            kubelogin_mode=settings.kubelogin_mode, deployer_principal_type=deployer,
        ), opts=child)
        # The progressive-delivery engine and the metrics its canary analysis reads: platform
        # parts, there before any model is.
        in_cluster = pulumi.ResourceOptions(parent=self, providers=[self.cluster.provider])
        self.rollouts = ArgoRollouts(f"{name}-rollouts", ArgoRolloutsArgs(), opts=in_cluster)
        self.metrics = ManagedPrometheus(f"{name}-metrics", ManagedPrometheusArgs(
            resource_group_name=rg, location=settings.location,
            workspace_name=f"{settings.cluster_name[:40].rstrip('-_')}-amw",
            cluster_id=self.cluster.cluster_id, cluster_name=settings.cluster_name,
            oidc_issuer_url=self.cluster.oidc_issuer_url, namespace=settings.namespace,
        ), opts=in_cluster)

        self.release_trigger: ReleaseTrigger | None = None
        if settings.release_webhook_url:
            self.release_trigger = ReleaseTrigger(f"{name}-release", ReleaseTriggerArgs(
                resource_group_name=rg, location=settings.location,
                storage_account_id=self.store.account.id, container=settings.model_container,
                model_name=settings.model_name, webhook_url=settings.release_webhook_url,
                alias=settings.release_alias,
            ), opts=child)
        self.outputs: dict[str, pulumi.Input[object]] = {
            "resourceGroupName": rg,
            "storageAccountName": self.store.account_name,
            "blobEndpoint": self.store.blob_endpoint,
            "modelContainer": self.store.container_name,
            "registryLoginServer": self.registry.login_server,
            "clusterName": self.cluster.cluster_name,
            "kubeconfig": self.cluster.kubeconfig,
            "prometheusQueryEndpoint": self.metrics.query_endpoint,
        }
        self.image: ModelImage | None = None
        self.image_test: ImageTest | None = None
        self.image_sbom: ImageSbom | None = None
        self.service: ModelService | None = None
        self.imported: ImportedImage | None = None
        if release is not None:
            self._promote(name, settings, release)
        elif choice.spec is None:
            pulumi.log.warn(choice.reason, resource=self)
            self.outputs["modelStatus"] = choice.reason
        else:
            self._deploy_model(name, settings, project_root, choice.spec)
        self.register_outputs(self.outputs)

    def _deploy_model(self, name: str, settings: Settings, project_root: Path, spec: BuildSpec) -> None:
        manifest = spec.manifest
        self.image = ModelImage(f"{name}-image", ModelImageArgs(
            login_server=self.registry.login_server,
            repository=f"modelship/{manifest.name}",
            tag=spec.tag,
            context=_relative(spec.context, project_root),
            dockerfile=_relative(spec.dockerfile, project_root),
            build_args=spec.build_args,
            builder=settings.image_builder,
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[
            a for a in (self.registry.push_assignment,) if a is not None
        ]))
        sized = self.resources
        assert sized is not None  # sized whenever a model was fetched
        # The workload's image comes only from the container test's output: an image that failed
        # (or was never tested) cannot reach the Deployment, however often `pulumi up` runs.
        self.image_test = ImageTest(f"{name}-imagetest", ImageTestArgs(
            image=self.image.image_ref, model_name=manifest.name, model_version=manifest.version,
            memory_limit=sized.memory_limit, cpu_limit=settings.cpu_limit,
            startup_seconds=sized.startup_seconds,
        ), opts=pulumi.ResourceOptions(parent=self))
        # Its SBOM, stored beside it in ACR, only once it passed; the workload waits for it.
        self.image_sbom = ImageSbom(f"{name}-sbom", ImageSbomArgs(
            image=self.image_test.verified_ref, registry_name=settings.registry_name,
        ), opts=pulumi.ResourceOptions(parent=self))
        verified = self.image_sbom.image_ref
        self._serve(name, settings, verified, manifest.name, manifest.version, manifest.size)
        # What a promoting stack (prod) deploys: exists only once the container test passed.
        self.outputs["release"] = release_of(verified, self.image_test.signer, manifest.name,
                                             manifest.version, manifest.size, self.image_sbom.digest)
        self.outputs["modelSigner"] = self.image_test.signer
        self.outputs["sbomDigest"] = self.image_sbom.digest

    def _promote(self, name: str, settings: Settings, release: Release) -> None:
        """Deploy ``release`` (verified by ``promoteFrom``): no build and no test here, by design."""
        assert settings.promote_from is not None
        self.imported = ImportedImage(f"{name}-import", ImportedImageArgs(
            release=release, registry_name=settings.registry_name, login_server=self.registry.login_server,
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[self.registry.registry]))
        checked = checked_image(settings.promote_from, self.imported.image_ref, release,
                                opts=pulumi.ResourceOptions(parent=self))
        self._serve(name, settings, checked.image, release.model, release.model_version, release.model_size)
        self.outputs.update({"release": release.to_output(), "promotedFrom": settings.promote_from,
                             "modelSigner": release.model_signer,
                             # The SBOM was imported with the image (ImportedImage): the same digest.
                             **({"sbomDigest": release.sbom_digest} if release.sbom_digest else {}),
                             "previousRelease": checked.previous_release})

    def _serve(self, name: str, settings: Settings, image: pulumi.Output[str], model: str, version: str,
               size: int) -> None:
        zone = None
        if settings.dns_zone_name:
            zone = DnsZoneArgs(zone_name=settings.dns_zone_name,
                               resource_group_name=settings.zone_resource_group,
                               record_name=settings.dns_label)
        self.service = ModelService(f"{name}-service", ModelServiceArgs(
            image=image,
            model_name=model,
            model_version=version,
            dns_label=settings.dns_label,
            location=settings.location,
            canary=CanaryArgs(prometheus_url=self.metrics.query_endpoint,
                              analysis_client_id=self.metrics.analysis_client_id,
                              service_account=self.metrics.analysis_service_account),
            namespace=settings.namespace,
            replicas=settings.replicas,
            max_replicas=settings.max_replicas,
            target_cpu_utilization=settings.target_cpu_utilization,
            cpu_request=settings.cpu_request,
            cpu_limit=settings.cpu_limit,
            model_size=size,
            memory_request=settings.memory_request,
            memory_limit=settings.memory_limit,
            startup_seconds=settings.startup_seconds,
            dns_zone=zone,
            # The kubelet may pull; the Argo Rollouts CRDs exist; the analysis may read the metrics.
            depends_on=[a for a in (self.cluster.acr_pull, self.rollouts.release, self.metrics.reader,
                                    self.metrics.federated_credential) if a is not None],
        ), opts=pulumi.ResourceOptions(parent=self, providers=[self.cluster.provider]))
        self.outputs.update({
            "model": f"{model}@{version}",
            "imageRef": image,
            "verifiedDigest": image.apply(lambda ref: ref.rsplit("@", 1)[1]),
            "url": self.service.url,
            "rolloutName": self.service.rollout_name,
            "namespace": settings.namespace,
        })


def build_stack(settings: Settings, project_root: Path | str, revision: str | None = None) -> ModelshipStack:
    """Create the whole stack for ``settings``; files are read relative to ``project_root``."""
    root = Path(project_root)
    rev = revision or resolve_revision(settings.revision, root)
    return ModelshipStack("modelship", settings, root, rev)
