"""ReleaseTrigger: a promotion in the model store starts the delivery pipeline, with no one pressing a button.

``modelship-models promote`` rewrites one blob per alias (``NAME/_aliases/ALIAS.json``, see
``modelstore.aliases``). This component declares an Event Grid *system topic* on the storage
account and one subscription whose subject filter matches exactly that blob, delivering its
``BlobCreated`` events to the pipeline's own webhook trigger (an Azure DevOps "Incoming WebHook"
service connection, which azure-pipelines.yml listens to). Moving any other blob (a publish, a
report, another alias) starts nothing.

No credential is involved, so none can land in state or props: the webhook URL names the trigger
and carries no secret (URLs with a signature, key or token in them are refused), and the pipeline
never trusts the event's content; it re-reads the alias from the store with its own identity, so
a forged call can at most re-release what the alias already names. GitHub's ``repository_dispatch``
needs a token in the request, which Event Grid would have to hold (in state), so GitHub is not a
direct target: relay through Azure DevOps or a function with a managed identity (docs/release.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pulumi
from pulumi_azure_native import eventgrid

from modelship_contract.manifest import ALIAS_DIR, is_alias_name, validate_name

STORAGE_TOPIC_TYPE = "Microsoft.Storage.StorageAccounts"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
# ARM's limits on an event subscription's retry policy (Microsoft.EventGrid, RetryPolicy:
# maxDeliveryAttempts 1-30, eventTimeToLiveInMinutes 1-1440;
# https://learn.microsoft.com/azure/event-grid/delivery-and-retry).
MAX_DELIVERY_ATTEMPTS = (1, 30)
EVENT_TTL_MINUTES = (1, 1440)
_SECRET_QUERY_KEYS = {"sig", "code", "token", "key", "secret", "password", "access_token", "x-functions-key"}


def check_webhook_url(url: str, key: str = "webhook_url") -> str:
    """Refuse what Event Grid cannot deliver to, and any URL that carries a credential into state."""
    parts = urlsplit(url or "")
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{key} must be an https URL (Event Grid delivers to https only), got "
                         f"{parts.scheme or 'no'} scheme")
    secret_keys = sorted({k.lower() for k, _ in parse_qsl(parts.query)} & _SECRET_QUERY_KEYS)
    if parts.username or parts.password or secret_keys:
        raise ValueError(
            f"{key} carries a credential (" + ", ".join(secret_keys or ["user info"]) + "), which would be "
            "stored in the stack's state: use a trigger that needs none (an Azure DevOps incoming webhook "
            "without secret) and let the pipeline re-read the alias itself")
    return url


@dataclass
class ReleaseTriggerArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the storage account (the system topic lives beside it)."""
    location: pulumi.Input[str]
    """Region of the storage account: a system topic must be in its source's region."""
    storage_account_id: pulumi.Input[str]
    """ARM id of the model store's storage account (the topic's source)."""
    container: str
    """The model store's container."""
    model_name: str
    """The model whose alias starts releases."""
    webhook_url: str
    """The pipeline's webhook trigger, e.g. ``https://dev.azure.com/ORG/_apis/public/distributedtask/
    webhooks/modelPromoted?api-version=6.0-preview``; carries no credential."""
    alias: str = "production"
    """The alias whose moves start a release."""
    max_delivery_attempts: int = 10
    event_ttl_minutes: int = 60
    """A promotion older than this is dropped rather than released late."""

    def __post_init__(self) -> None:
        validate_name(self.model_name, "model_name")
        if not is_alias_name(self.alias):
            raise ValueError(f"alias {self.alias!r} is not an alias name: a lowercase letter, then lowercase "
                             "letters, digits and '-'")
        check_webhook_url(self.webhook_url)
        for value, (low, high), key in (
                (self.max_delivery_attempts, MAX_DELIVERY_ATTEMPTS, "max_delivery_attempts"),
                (self.event_ttl_minutes, EVENT_TTL_MINUTES, "event_ttl_minutes")):
            if not low <= value <= high:
                raise ValueError(f"{key} must be from {low} to {high} (ARM's limit), got {value}")

    @property
    def subject(self) -> str:
        """The Event Grid subject of the alias record blob."""
        return (f"/blobServices/default/containers/{self.container}/blobs/"
                f"{self.model_name}/{ALIAS_DIR}/{self.alias}.json")


class ReleaseTrigger(pulumi.ComponentResource):
    """Event Grid system topic on the storage account + a subscription to one alias record."""

    subscription_name: pulumi.Output[str]
    """Name of the event subscription."""

    def __init__(self, name: str, args: ReleaseTriggerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:release:ReleaseTrigger", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = eventgrid.SystemTopic(
            f"{name}-topic",
            resource_group_name=args.resource_group_name,
            location=args.location,
            source=args.storage_account_id,
            topic_type=STORAGE_TOPIC_TYPE,
            opts=child,
        )
        self.subscription = eventgrid.SystemTopicEventSubscription(
            f"{name}-sub",
            resource_group_name=args.resource_group_name,
            system_topic_name=self.topic.name,
            event_subscription_name=f"{args.model_name}-{args.alias}-promoted",
            destination=eventgrid.WebHookEventSubscriptionDestinationArgs(
                endpoint_type="WebHook",
                endpoint_url=args.webhook_url,
                max_events_per_batch=1,  # one promotion, one run
            ),
            filter=eventgrid.EventSubscriptionFilterArgs(
                included_event_types=[BLOB_CREATED],
                # Exactly the alias record: a publish, a report or another alias starts nothing.
                subject_begins_with=args.subject,
                subject_ends_with=f"/{args.alias}.json",
                is_subject_case_sensitive=True,
            ),
            event_delivery_schema=eventgrid.EventDeliverySchema.EVENT_GRID_SCHEMA,
            retry_policy=eventgrid.RetryPolicyArgs(
                max_delivery_attempts=args.max_delivery_attempts,
                event_time_to_live_in_minutes=args.event_ttl_minutes,
            ),
            opts=child,
        )
        self.subscription_name = self.subscription.name
        self.register_outputs({"subscriptionName": self.subscription_name})
