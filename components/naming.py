"""Azure and Kubernetes naming rules: one compiled pattern per rule, each with its source.

The stack's settings validate config keys with them, the components validate their Args with them,
and the recording mocks' ARM rules (:mod:`components.arm_rules`) check every registration with them,
so a rule cannot drift between the three.
"""

from __future__ import annotations

import re

from modelship_contract.manifest import NAME_RE

# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
STORAGE_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
"""Microsoft.Storage/storageAccounts: 3-24 lowercase letters and digits."""
BLOB_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
"""storageAccounts/blobServices/containers: 3-63 lowercase letters, digits and single hyphens."""
REGISTRY_RE = re.compile(r"^[A-Za-z0-9]{5,50}$")
"""Microsoft.ContainerRegistry/registries: 5-50 letters and digits."""
CLUSTER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
"""Microsoft.ContainerService/managedClusters: 1-63, alphanumerics, '_' and '-', alphanumeric ends."""
RESOURCE_GROUP_RE = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
"""resourcegroups: 1-90 of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'."""
LOCATION_RE = re.compile(r"^[a-z][a-z0-9]{2,39}$")
"""A region's programmatic name (``westeurope``), as ``az account list-locations`` prints it."""
DNS_PREFIX_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,52}[A-Za-z0-9])?$")
"""AKS dnsPrefix: 1-54 letters, digits and '-', alphanumeric ends
(https://learn.microsoft.com/azure/aks/create-cluster, ``az aks create --dns-name-prefix``)."""
AZURE_DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
"""A public IP's domainNameLabel, which the AKS cloud provider sets from the Service annotation:
stricter than RFC 1123, 3+ characters and a letter first
(https://learn.microsoft.com/azure/virtual-network/ip-services/public-ip-addresses#dns-name-label,
the ARM error InvalidDomainNameLabel)."""
RFC1123_LABEL_RE = NAME_RE
"""Kubernetes names that are DNS labels (namespaces, services): RFC 1123, at most 63
(https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-label-names)."""
DNS_ZONE_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
"""A lowercase DNS zone name without the trailing dot (``models.example.com``)."""
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"
"""The Service annotation the AKS cloud provider reads the public IP's DNS name label from."""
