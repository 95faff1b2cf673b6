"""Managed Prometheus: workspace, collection for AKS, the scrape job, the analysis identity."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from components import monitoring
from components.monitoring import ManagedPrometheusArgs, msprom_name, scrape_config
from components.testing import StackRun, by_type, one, run_stack
from modelship_contract.canary import SELECTOR_LABEL
from tests.components.conftest import make_project, make_settings

MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("monitoring") / "project")
    return run_stack(make_settings(), project_root=root)


def test_the_cluster_runs_the_metrics_add_on(run: StackRun) -> None:
    cluster = one(run, "azure-native:containerservice:ManagedCluster").inputs
    assert cluster["azureMonitorProfile"] == {"metrics": {"enabled": True}}


def test_collection_goes_from_the_cluster_to_the_workspace_in_its_region(run: StackRun) -> None:
    amw = one(run, "azure-native:monitor:AzureMonitorWorkspace")
    dce = one(run, "azure-native:monitor:DataCollectionEndpoint")
    dcr = one(run, "azure-native:monitor:DataCollectionRule")
    cluster = one(run, "azure-native:containerservice:ManagedCluster")
    # Azure creates the DCE and DCR in the workspace's region.
    assert amw.inputs["location"] == dce.inputs["location"] == dcr.inputs["location"]
    assert dcr.inputs["dataCollectionEndpointId"] == dce.id
    assert dcr.inputs["destinations"]["monitoringAccounts"] == [
        {"accountResourceId": amw.id, "name": monitoring.DESTINATION}]
    assert dcr.inputs["dataSources"]["prometheusForwarder"][0]["streams"] == ["Microsoft-PrometheusMetrics"]
    associations = {r.inputs["associationName"]: r.inputs
                    for r in by_type(run, "azure-native:monitor:DataCollectionRuleAssociation")}
    assert set(associations) == {dcr.inputs["dataCollectionRuleName"], "configurationAccessEndpoint"}
    assert all(a["resourceUri"] == cluster.id for a in associations.values())
    assert associations["configurationAccessEndpoint"]["dataCollectionEndpointId"] == dce.id
    assert associations[dcr.inputs["dataCollectionRuleName"]]["dataCollectionRuleId"] == dcr.id


def test_the_analysis_identity_reads_metrics_only_through_one_service_account(run: StackRun) -> None:
    identity = one(run, "azure-native:managedidentity:UserAssignedIdentity")
    fic = one(run, "azure-native:managedidentity:FederatedIdentityCredential").inputs
    cluster = one(run, "azure-native:containerservice:ManagedCluster")
    assert fic["issuer"] == cluster.outputs["oidcIssuerProfile"]["issuerURL"]
    assert fic["subject"] == "system:serviceaccount:modelship:modelship-analysis"
    assert fic["audiences"] == ["api://AzureADTokenExchange"]
    assert fic["resourceName"] == identity.outputs["name"]
    readers = [r.inputs for r in by_type(run, "azure-native:authorization:RoleAssignment")
               if r.inputs["roleDefinitionId"].endswith(MONITORING_DATA_READER)]
    amw = one(run, "azure-native:monitor:AzureMonitorWorkspace")
    assert readers == [{**readers[0], "principalId": identity.outputs["principalId"],
                        "principalType": "ServicePrincipal", "scope": amw.id}]
    assert run.outputs["prometheusQueryEndpoint"].endswith(".prometheus.monitor.azure.com")
    assert "prometheusQueryEndpoint" not in run.secret_outputs  # an address, no credential


def test_no_secret_is_stored_for_the_metrics_path(run: StackRun) -> None:
    tokens = {"azure-native:monitor:AzureMonitorWorkspace", "azure-native:monitor:DataCollectionEndpoint",
              "azure-native:monitor:DataCollectionRule", "azure-native:monitor:DataCollectionRuleAssociation",
              "azure-native:managedidentity:UserAssignedIdentity",
              "azure-native:managedidentity:FederatedIdentityCredential", "kubernetes:core/v1:ConfigMap"}
    for resource in (r for r in run if r.type in tokens):
        assert not resource.secret_inputs, resource.name
        text = json.dumps(resource.inputs).lower()
        assert "secret" not in text and "password" not in text and "key" not in text.replace("keep", "")


def test_the_scrape_job_is_a_valid_prometheus_config_that_labels_canary_and_stable(run: StackRun,
                                                                                     tmp_path) -> None:
    configmap = one(run, "kubernetes:core/v1:ConfigMap").inputs
    assert configmap["metadata"] == {"name": "ama-metrics-prometheus-config", "namespace": "kube-system"}
    text = configmap["data"]["prometheus-config"]
    job = json.loads(text)["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["modelship"]}}]
    relabel = {r.get("target_label"): r for r in job["relabel_configs"]}
    hash_label = "__meta_kubernetes_pod_label_rollouts_pod_template_hash"
    assert relabel[SELECTOR_LABEL]["source_labels"] == [hash_label]
    proc = _promtool_check(json.loads(text), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _promtool_check(config: dict, tmp_path) -> subprocess.CompletedProcess:
    """``promtool check config`` on the job. Debian builds Prometheus without Kubernetes service
    discovery, so the job's ``kubernetes_sd_configs`` (checked above against what the add-on
    documents: role ``pod``, a list of namespaces) is swapped for a static target; everything else
    (relabel rules and their regexes, intervals, paths) is Prometheus' own check."""
    config = json.loads(json.dumps(config))
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
        job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus, installed by bootstrap) is needed to check the config"
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    return subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)


def test_promtool_refuses_a_broken_scrape_job(tmp_path) -> None:
    """The check above can fail: a relabel action Prometheus does not know is refused."""
    config = json.loads(scrape_config("modelship"))
    config["scrape_configs"][0]["relabel_configs"][0]["action"] = "kep"
    proc = _promtool_check(config, tmp_path)
    assert proc.returncode != 0 and "kep" in proc.stdout + proc.stderr


def test_collection_names_follow_azure() -> None:
    assert msprom_name("westeurope", "modelship-aks") == "MSProm-westeurope-modelship-aks"
    long = msprom_name("australiasoutheast", "a-very-long-cluster-name-for-the-prod-env")
    assert len(long) == 44 and long[-1].isalnum()


def test_bad_workspace_name_is_refused() -> None:
    with pytest.raises(ValueError, match="workspace_name must be 3-44"):
        ManagedPrometheusArgs(resource_group_name="rg", location="westeurope", workspace_name="-x",
                              cluster_id="id", cluster_name="aks", oidc_issuer_url="https://o", namespace="m")
