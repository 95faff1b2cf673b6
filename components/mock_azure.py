"""What the mocked Azure, Kubernetes and docker-build providers answer: realistic ids and outputs.

The fixed identities (subscription, tenant, the deploying principal, the kubelet identity) and the
outputs each resource type gets (ACR login server, AKS kubelet identity and OIDC issuer, storage
endpoints, LoadBalancer IP, image digest). Used by :mod:`components.offline` (the plan, and
through it the test mocks); no Pulumi runtime.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from components import image_sbom, image_test

SUBSCRIPTION_ID = "00000000-1111-2222-3333-444444444444"
"""Subscription id returned by the mocked ``getClientConfig``."""
TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_OBJECT_ID = "99999999-8888-7777-6666-555555555555"
"""Object id of the (mocked) identity running the deployment."""
KUBELET_OBJECT_ID = "kubelet-0000-1111-2222-333333333333"
"""Object id of the mocked AKS kubelet identity."""
LOAD_BALANCER_IP = "20.50.60.70"
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
"""The fixed AKS AAD server application id kubelogin asks tokens for."""

GET_CLIENT_CONFIG = "azure-native:authorization:getClientConfig"
LIST_USER_CREDENTIALS = "azure-native:containerservice:listManagedClusterUserCredentials"
INVOKES = frozenset({GET_CLIENT_CONFIG, LIST_USER_CREDENTIALS})
"""Every invoke token the program may make; anything else is an error."""


def exec_kubeconfig(server: str = "https://modelship-aks.hcp.westeurope.azmk8s.io:443") -> str:
    """An AKS exec-format user kubeconfig (what ``format=exec`` returns), as YAML text."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: {server}\n"
        "  name: modelship-aks\n"
        "contexts:\n- context:\n    cluster: modelship-aks\n    user: clusterUser_modelship\n"
        "  name: modelship-aks\ncurrent-context: modelship-aks\n"
        "users:\n- name: clusterUser_modelship\n  user:\n    exec:\n"
        "      apiVersion: client.authentication.k8s.io/v1beta1\n"
        "      command: kubelogin\n"
        "      args: [get-token, --login, devicecode, --server-id, " + AKS_SERVER_ID + ", --client-id,"
        " 80faf920-1908-4b52-b5ef-a8e7bedfc67a, --tenant-id, " + TENANT_ID + ", --environment,"
        " AzurePublicCloud]\n"
        "      env: null\n      installHint: install kubelogin\n      provideClusterInfo: false\n"
    )


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def fabricate(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    out = copy.deepcopy(inputs)
    if not typ.startswith("azure-native:"):
        return _fabricate_other(typ, name, inputs, out)
    rg = inputs.get("resourceGroupName", "rg")
    base = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{rg}/providers"
    if typ == "azure-native:resources:ResourceGroup":
        out["name"] = inputs.get("resourceGroupName", name)
        return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{out['name']}", out
    if typ == "azure-native:storage:StorageAccount":
        acct = out["name"] = inputs.get("accountName", name)
        out["primaryEndpoints"] = {"blob": f"https://{acct}.blob.core.windows.net/"}
        return f"{base}/Microsoft.Storage/storageAccounts/{acct}", out
    if typ == "azure-native:storage:BlobContainer":
        out["name"] = inputs.get("containerName", name)
        return (f"{base}/Microsoft.Storage/storageAccounts/{inputs.get('accountName')}/blobServices/"
                f"default/containers/{out['name']}"), out
    if typ == "azure-native:storage:BlobServiceProperties":
        out["name"] = "default"
        account = inputs.get("accountName")
        return f"{base}/Microsoft.Storage/storageAccounts/{account}/blobServices/default", out
    if typ == "azure-native:containerregistry:Registry":
        reg = out["name"] = inputs.get("registryName", name)
        out["loginServer"] = f"{reg.lower()}.azurecr.io"
        return f"{base}/Microsoft.ContainerRegistry/registries/{reg}", out
    if typ == "azure-native:containerservice:ManagedCluster":
        cluster = out["name"] = inputs.get("resourceName", name)
        out["fqdn"] = f"{cluster}.hcp.{inputs.get('location')}.azmk8s.io"
        out["identityProfile"] = {"kubeletidentity": {
            "objectId": KUBELET_OBJECT_ID, "clientId": "kubelet-client-id",
            "resourceId": f"{base}/Microsoft.ManagedIdentity/userAssignedIdentities/{cluster}-agentpool",
        }}
        out["oidcIssuerProfile"] = {"enabled": True,
                                    "issuerURL": f"https://oidc.example/{TENANT_ID}/{cluster}/"}
        return f"{base}/Microsoft.ContainerService/managedClusters/{cluster}", out
    if typ == "azure-native:authorization:RoleAssignment":
        out["name"] = _digest(inputs)[:32]
        scope = inputs.get("scope")
        return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{out['name']}", out
    if typ == "azure-native:dns:RecordSet":
        rel = inputs.get("relativeRecordSetName", name)
        out["name"] = rel
        out["fqdn"] = f"{rel}.{inputs.get('zoneName')}."
        return f"{base}/Microsoft.Network/dnszones/{inputs.get('zoneName')}/A/{rel}", out
    if typ == "azure-native:monitor:AzureMonitorWorkspace":
        amw = out["name"] = inputs.get("azureMonitorWorkspaceName", name)
        out["metrics"] = {"internalId": f"mac_{_digest(amw)[:8]}", "prometheusQueryEndpoint":
                          f"https://{amw}-{_digest(amw)[:8]}.{inputs.get('location')}.prometheus.monitor.azure.com"}
        return f"{base}/Microsoft.Monitor/accounts/{amw}", out
    if typ in ("azure-native:monitor:DataCollectionEndpoint", "azure-native:monitor:DataCollectionRule"):
        kind = "dataCollectionEndpoints" if typ.endswith("Endpoint") else "dataCollectionRules"
        out["name"] = inputs.get("dataCollectionEndpointName") or inputs.get("dataCollectionRuleName") or name
        return f"{base}/Microsoft.Insights/{kind}/{out['name']}", out
    if typ == "azure-native:monitor:DataCollectionRuleAssociation":
        out["name"] = inputs.get("associationName", name)
        return f"{inputs.get('resourceUri')}/providers/Microsoft.Insights/dataCollectionRuleAssociations/" \
               f"{out['name']}", out
    if typ == "azure-native:managedidentity:UserAssignedIdentity":
        uai = out["name"] = inputs.get("resourceName", name)
        out.update(clientId=f"client-{_digest(uai)[:12]}", principalId=f"principal-{_digest(uai)[:12]}",
                   tenantId=TENANT_ID)
        return f"{base}/Microsoft.ManagedIdentity/userAssignedIdentities/{uai}", out
    if typ == "azure-native:managedidentity:FederatedIdentityCredential":
        out["name"] = inputs.get("federatedIdentityCredentialResourceName", name)
        return (f"{base}/Microsoft.ManagedIdentity/userAssignedIdentities/{inputs.get('resourceName')}/"
                f"federatedIdentityCredentials/{out['name']}"), out
    out.setdefault("name", name)
    return f"{base}/{typ}/{name}", out

def _fabricate_other(typ: str, name: str, inputs: dict[str, Any],
                     out: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if typ == "docker-build:index:Image":
        digest = "sha256:" + _digest(inputs)
        tags = inputs.get("tags") or []
        out["digest"] = digest
        out["contextHash"] = _digest(inputs.get("context"), inputs.get("buildArgs"))
        out["ref"] = f"{tags[0]}@{digest}" if tags else ""
        return f"{name}-id", out
    if typ == "command:local:Command":
        # The command "runs" and succeeds: a container test prints what delivery.imagetest prints,
        # the SBOM step what delivery.sbom push prints (a digest made from the image's).
        image = (inputs.get("environment") or {}).get("MODELSHIP_IMAGE", "")
        if str(inputs.get("create", "")).startswith(image_sbom.COMMAND):
            out["stdout"] = f"{image_sbom.DIGEST_PREFIX}sha256:{_digest('sbom', image)}" if image else ""
        else:
            out["stdout"] = (f"{image_test.SIGNER_PREFIX}ecdsa-p256:0123456789abcdef\n"
                             f"{image_test.VERIFIED_PREFIX}{image}") if image else ""
        out["stderr"] = ""
        return f"{name}-id", out
    if typ.startswith("kubernetes:") and not typ.startswith("pulumi:providers"):
        meta = out.setdefault("metadata", {})
        # Mimic Pulumi auto-naming: logical name plus a stable suffix.
        meta.setdefault("name", f"{name}-{_digest(typ, name)[:8]}")
        if typ == "kubernetes:core/v1:Service":
            out["status"] = {"loadBalancer": {"ingress": [{"ip": LOAD_BALANCER_IP}]}}
        ns = meta.get("namespace")
        return (f"{ns}/{meta['name']}" if ns else meta["name"]), out
    return f"{name}-id", out


