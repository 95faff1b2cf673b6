"""Each Azure rule the mocks encode fires on the input Azure refuses, and stays quiet on the stack."""

from __future__ import annotations

import copy

import pytest

from components.arm_rules import RULES, check_resource
from components.testing import CLIENT_OBJECT_ID, KUBELET_OBJECT_ID, RecordedResource, run_stack
from tests.components.conftest import make_project, make_settings

KINDS = {CLIENT_OBJECT_ID: "ServicePrincipal", KUBELET_OBJECT_ID: "ServicePrincipal"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> list[RecordedResource]:
    root = make_project(tmp_path_factory.mktemp("arm") / "project")
    return [r for r in run_stack(make_settings(), project_root=root) if r.custom]


def _inputs(recorded: list[RecordedResource], token: str) -> dict:
    return copy.deepcopy(next(r for r in recorded if r.type == token).inputs)


def test_the_stack_breaks_no_rule(recorded) -> None:
    assert [m for r in recorded for m in check_resource(r.type, r.name, r.inputs, KINDS)] == []
    assert {r.type for r in recorded} >= set(RULES)  # every rule has something to look at


CASES = [
    ("principal type of the deployer", "azure-native:authorization:RoleAssignment",
     lambda i: i.update(principalType="User"), "UnmatchedPrincipalType"),
    ("principal type omitted", "azure-native:authorization:RoleAssignment",
     lambda i: i.update(principalId="unknown-object", principalType=None), "principalType must be set"),
    ("Azure RBAC without managed Entra ID", "azure-native:containerservice:ManagedCluster",
     lambda i: i["aadProfile"].update(managed=False), "enableAzureRBAC needs aadProfile.managed"),
    ("local accounts off without Entra ID", "azure-native:containerservice:ManagedCluster",
     lambda i: i.pop("aadProfile"), "disableLocalAccounts needs Entra ID"),
    ("cilium policy without the cilium dataplane", "azure-native:containerservice:ManagedCluster",
     lambda i: i["networkProfile"].pop("networkDataplane"), "requires networkDataplane 'cilium'"),
    ("cilium dataplane with Azure NPM", "azure-native:containerservice:ManagedCluster",
     lambda i: i["networkProfile"].update(networkPolicy="azure"), "enforces only networkPolicy 'cilium'"),
    ("Azure NPM on kubenet", "azure-native:containerservice:ManagedCluster",
     lambda i: i["networkProfile"].update(networkPolicy="azure", networkDataplane=None,
                                          networkPlugin="kubenet"),
     "require networkPlugin 'azure'"),
    ("storage account name", "azure-native:storage:StorageAccount",
     lambda i: i.update(accountName="Model-Store"), "accountName 'Model-Store' is not allowed"),
    ("registry name", "azure-native:containerregistry:Registry",
     lambda i: i.update(registryName="acr"), "registryName 'acr' is not allowed"),
    ("AKS dns prefix", "azure-native:containerservice:ManagedCluster",
     lambda i: i.update(dnsPrefix="x" * 55), "dnsPrefix"),
    ("DNS label of the public IP", "kubernetes:core/v1:Service",
     lambda i: i["metadata"]["annotations"].update({"service.beta.kubernetes.io/azure-dns-label-name": "9x"}),
     "azure-dns-label-name"),
    ("Kubernetes name over 63", "kubernetes:core/v1:Namespace",
     lambda i: i["metadata"].update(name="n" * 64), "RFC 1123 label of at most 63"),
    ("registry cache export on the docker driver", "docker-build:index:Image",
     lambda i: i.pop("builder"), "default docker driver refuses cache export"),
    ("metrics add-on without a managed identity", "azure-native:containerservice:ManagedCluster",
     lambda i: i.update(identity={"type": "None"}), "azureMonitorProfile.metrics needs a managed identity"),
    ("data flow to an undeclared destination", "azure-native:monitor:DataCollectionRule",
     lambda i: i["dataFlows"][0].update(destinations=["MonitoringAccount2"]),
     "is not among its destinations"),
    ("data flow of a stream no source emits", "azure-native:monitor:DataCollectionRule",
     lambda i: i["dataSources"]["prometheusForwarder"][0].update(streams=["Microsoft-Perf"]),
     "comes from no data source"),
    ("association with both a rule and an endpoint", "azure-native:monitor:DataCollectionRuleAssociation",
     lambda i: i.update(dataCollectionRuleId="/subscriptions/x/dcr",
                        dataCollectionEndpointId="/subscriptions/x/dce"),
     "exactly one of"),
    ("endpoint association with another name", "azure-native:monitor:DataCollectionRuleAssociation",
     lambda i: i.update(dataCollectionRuleId=None, dataCollectionEndpointId="/subscriptions/x/dce",
                        associationName="modelship-dce"),
     "must be named 'configurationAccessEndpoint'"),
    ("federated credential with two audiences", "azure-native:managedidentity:FederatedIdentityCredential",
     lambda i: i.update(audiences=["api://AzureADTokenExchange", "api://other"]), "exactly one audience"),
    ("federated credential name", "azure-native:managedidentity:FederatedIdentityCredential",
     lambda i: i.update(federatedIdentityCredentialResourceName="-x"), "must be 3-120"),
    ("service account subject", "azure-native:managedidentity:FederatedIdentityCredential",
     lambda i: i.update(subject="system:serviceaccount:Modelship:analysis"), "RFC 1123"),
    ("federated credential issuer", "azure-native:managedidentity:FederatedIdentityCredential",
     lambda i: i.update(issuer="http://oidc.example/"), "issuer must be an https URL"),
]


@pytest.mark.parametrize(("what", "token", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_fires(recorded, what, token, mutate, expected) -> None:
    inputs = _inputs(recorded, token)
    mutate(inputs)
    messages = check_resource(token, "r", inputs, KINDS)
    assert any(expected in m for m in messages), messages

