"""ReleaseTrigger under the strict mocks: the Event Grid wiring, and no credential anywhere."""

from __future__ import annotations

import pulumi
import pytest

from components.release_trigger import ALIAS_DIR, ReleaseTrigger, ReleaseTriggerArgs
from components.testing import RecordingMocks, by_type, one
from modelstore.aliases import ALIAS_DIR as STORE_ALIAS_DIR
from modelstore.aliases import alias_blob_name

ACCOUNT_ID = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/"
              "modelshipdev01")
WEBHOOK = ("https://dev.azure.com/contoso/_apis/public/distributedtask/webhooks/modelPromoted"
           "?api-version=6.0-preview")


def trigger_args(**overrides: object) -> ReleaseTriggerArgs:
    values: dict = {"resource_group_name": "rg", "location": "westeurope", "storage_account_id": ACCOUNT_ID,
                    "container": "models", "model_name": "digits", "webhook_url": WEBHOOK}
    return ReleaseTriggerArgs(**{**values, **overrides})


def test_the_subject_is_the_blob_promote_writes() -> None:
    assert ALIAS_DIR == STORE_ALIAS_DIR
    blob = alias_blob_name("digits", "production")
    assert trigger_args().subject == f"/blobServices/default/containers/models/blobs/{blob}"


@pulumi.runtime.test
def test_system_topic_and_subscription_to_the_alias_record(mocks: RecordingMocks) -> pulumi.Output:
    trigger = ReleaseTrigger("release", trigger_args(alias="staging"))

    def check(_name: str) -> None:
        topic = one(mocks.resources, "azure-native:eventgrid:SystemTopic")
        assert topic.inputs["source"] == ACCOUNT_ID
        assert topic.inputs["topicType"] == "Microsoft.Storage.StorageAccounts"
        assert topic.inputs["location"] == "westeurope"
        sub = one(mocks.resources, "azure-native:eventgrid:SystemTopicEventSubscription")
        assert sub.inputs["systemTopicName"] and sub.dependencies, "the subscription is not tied to the topic"
        f = sub.inputs["filter"]
        assert f["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
        assert f["subjectBeginsWith"] == \
            "/blobServices/default/containers/models/blobs/digits/_aliases/staging.json"
        assert f["subjectEndsWith"] == "/staging.json" and f["isSubjectCaseSensitive"] is True
        dest = sub.inputs["destination"]
        assert (dest["endpointType"], dest["endpointUrl"]) == ("WebHook", WEBHOOK)
        assert dest["maxEventsPerBatch"] == 1
        assert sub.inputs["eventDeliverySchema"] == "EventGridSchema"
        assert sub.inputs["retryPolicy"] == {"maxDeliveryAttempts": 10, "eventTimeToLiveInMinutes": 60}
        # Nothing secret is passed at all: there is no credential to keep out of state.
        for r in [*by_type(mocks.resources, "azure-native:eventgrid:SystemTopic"), sub]:
            assert not r.secret_inputs
        [component] = [r for r in mocks.resources if r.type == "modelship:release:ReleaseTrigger"]
        assert not component.inputs, "the component's props would land in state"

    return trigger.subscription_name.apply(check)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"webhook_url": "http://dev.azure.com/x"}, "must be an https URL"),
    ({"webhook_url": "https://api.github.com/repos/o/r/dispatches?token=abc"},
     r"carries a credential \(token\)"),
    ({"webhook_url": "https://f.azurewebsites.net/api/x?code=abc"}, r"carries a credential \(code\)"),
    ({"webhook_url": "https://prod.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sp=x&sig=abc"},
     r"carries a credential \(sig\)"),
    ({"webhook_url": "https://user:pw@example.com/hook"}, r"carries a credential \(user info\)"),
    ({"alias": "Prod"}, "is not an alias name"),
    ({"alias": "latest"}, "is not an alias name"),
    ({"model_name": "Digits"}, "model_name 'Digits' is not allowed"),
    ({"max_delivery_attempts": 31}, r"max_delivery_attempts must be from 1 to 30 \(ARM's limit\)"),
    ({"event_ttl_minutes": 0}, r"event_ttl_minutes must be from 1 to 1440"),
])
def test_bad_arguments_fail_before_any_resource(overrides: dict, message: str, mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match=message):
        trigger_args(**overrides)
    assert mocks.resources == []


def test_the_stack_declares_the_trigger_only_when_a_webhook_is_configured(project) -> None:
    from components.testing import run_stack
    from tests.components.conftest import make_settings

    run = run_stack(make_settings(releaseWebhookUrl=WEBHOOK, releaseAlias="production"), project_root=project)
    topic = one(run, "azure-native:eventgrid:SystemTopic")
    account = one(run, "azure-native:storage:StorageAccount")
    assert topic.inputs["source"] == account.outputs.get("id", account.id)
    sub = one(run, "azure-native:eventgrid:SystemTopicEventSubscription")
    assert sub.inputs["filter"]["subjectBeginsWith"].endswith("/blobs/digits/_aliases/production.json")
    assert not by_type(run_stack(make_settings(), project_root=project), "azure-native:eventgrid:SystemTopic")


def test_a_webhook_with_a_credential_fails_the_config_before_any_resource() -> None:
    from settings import SettingsError
    from tests.components.conftest import make_settings

    with pytest.raises(SettingsError, match=r"releaseWebhookUrl.*carries a credential \(sig\)"):
        make_settings(releaseWebhookUrl="https://x.logic.azure.com/w?sig=abc")
    with pytest.raises(SettingsError, match="releaseAlias"):
        make_settings(releaseAlias="latest")
