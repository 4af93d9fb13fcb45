"""deploy/helm is consistent with Kinitro: every setting the ConfigMap sets is a known one and
takes the value it means, the code location it names loads with each step a pod (k8s_job_executor),
the custom run coordinator accepts its config, and every run and step pod mounts the state volume
where KINITRO_STATE_DIR says. No Kubernetes cluster exists on these machines: nothing here starts
one, and the chart itself is not rendered (it is not reachable offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

HELM = Path(__file__).resolve().parents[2] / "deploy" / "helm"


@pytest.fixture
def values() -> dict:
    return yaml.safe_load((HELM / "values.yaml").read_text())


@pytest.fixture
def manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((HELM / "kinitro-state.yaml").read_text())}


def test_the_settings_are_known_and_select_pods_per_step(manifests, monkeypatch, tmp_path):
    import dagster as dg
    from dagster_k8s import k8s_job_executor

    from kinitro_dagster.definitions import build_definitions
    from kinitro_dagster.defs.resources import build_resources
    from kinitro_dagster.settings import ExecutorSettings, check_environment

    settings = manifests["ConfigMap"]["data"]
    check_environment(settings)  # a misspelt or refused name raises, naming what to use
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    # This host has neither the cluster's volume nor its signing hotkey (tests/audit covers signing).
    monkeypatch.setenv("KINITRO_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("KINITRO_SCHEDULER_WALLET_NAME")
    executor = ExecutorSettings()
    assert (executor.step_executor, executor.miners_per_shard, executor.eval_mode) == ("k8s", 16, "local")
    defs = build_definitions(build_resources())
    assert defs.resolve_job_def("evaluate_env").executor_def is k8s_job_executor
    # The automation's implicit asset job, which launches the episode partitions, too.
    assert defs.resolve_implicit_global_asset_job_def().executor_def is k8s_job_executor
    assert isinstance(defs.resolve_job_def("evaluate_env"), dg.JobDefinition)


def test_every_pod_mounts_the_state_volume_at_the_state_dir(values, manifests):
    state_dir = manifests["ConfigMap"]["data"]["KINITRO_STATE_DIR"]
    claim = manifests["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # run and step pods on any node
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    for pod in (deployment, launcher):
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["volumeMounts"]}
        assert volumes[mounts[state_dir]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert [c["name"] for c in pod["envConfigMaps"]] == [manifests["ConfigMap"]["metadata"]["name"]]


def test_the_code_location_and_the_coordinator_are_kinitros(values):
    import importlib

    from dagster._config import process_config

    from kinitro_dagster.defs.run_coordinator import EnvFamilyRunCoordinator

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "kinitro_dagster.definitions"
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert getattr(importlib.import_module(coordinator["module"]), coordinator["class"]) is EnvFamilyRunCoordinator
    result = process_config(EnvFamilyRunCoordinator.config_type(), coordinator["config"])
    assert result.success, result.errors
    # The daemon and the webserver load that class: they run the evaluator image, as the code does.
    images = {values[k]["image"]["repository"] for k in ("dagsterDaemon", "dagsterWebserver")}
    assert images == {deployment["image"]["repository"]}
    retries = values["dagsterDaemon"]["runRetries"]
    assert retries["enabled"] and not retries["retryOnAssetOrOpFailure"]


def test_the_k8s_step_executor_without_dagster_k8s_names_the_extra(monkeypatch):
    import builtins

    import dagster as dg

    from kinitro_dagster.defs.executors import step_executor

    real_import = builtins.__import__

    def without_dagster_k8s(name, *args, **kwargs):
        if name == "dagster_k8s":
            raise ImportError("No module named 'dagster_k8s'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_dagster_k8s)
    with pytest.raises(dg.DagsterInvalidDefinitionError, match=r"install the k8s extra"):
        step_executor("k8s")
