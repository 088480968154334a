# A read-then-assign workflow with msgraph-sdk, as config-as-code tools run one: list the
# device configurations with PageIterator (which follows the absolute @odata.nextLink), read
# their assignments in one $batch (BatchRequestContent: random item ids, absolute item URLs),
# read a group, then assign (the SDK's retry handler waits out a 429's Retry-After).
# Not run by CI (it needs PyPI packages); run by hand:
#   pip install msgraph-sdk deprecated     (msgraph-core 1.5.2 imports `deprecated` for batches)
#   python stand_in_graph.py 9000 &
#   graph-vcr record --upstream http://127.0.0.1:9000 --cassette sdk-workflow -- python msgraph_sdk_workflow.py
#   graph-vcr replay --cassette sdk-workflow -- python msgraph_sdk_workflow.py
#   graph-vcr replay --cassette sdk-workflow --forward -- python msgraph_sdk_workflow.py
# Run by hand on 2026-12-02 with Python 3.11.7, msgraph-sdk 1.65.0, msgraph-core 1.5.2:
# - record: "first page next link: http://127.0.0.1:PORT/v1.0/...?$skiptoken=page2" (the
#   stand-in's own link, rewritten to the proxy), 3 configurations over 2 pages, batch statuses
#   [200, 200, 200] (random item ids, absolute item URLs), the group, the assign after the SDK
#   waited out the stand-in's 429; summary "7 recorded, 1 forwarded … 1 batch", "not stored: 1
#   … a throttled answer (429 Too Many Requests)", result passed.
# - replay by base URL (stand-in stopped or not: replay never connects): the same output,
#   "7 replayed, 0 miss, 1 batch", result passed, exit 0.
# - replay --forward: next link "https://graph.microsoft.com/v1.0/...", the same output and
#   summary, result passed.
# Run by hand again on 2026-12-02 with --pseudonymize (issue 17), GRAPH_VCR_PSEUDONYM_KEY set:
# - record --pseudonymize: the same output, "7 recorded, 1 forwarded … 1 batch", result
#   passed; the group GUID this script hard-codes is in no file of the cassette directory.
# - replay (key set), by base URL and with --forward: the same output, "7 replayed, 0 miss, 1
#   batch", result passed: the SDK sends the real group id, which is aliased before keying.
# - replay without the key: every request up to the group read replays; GET /groups/{real id}
#   misses (501) with "The cassette is pseudonymised and its key is not here …", exit 1.
# (What issue 15 saw before: default record kept only the assign call, and PageIterator
# followed the absolute link straight to the host behind the proxy.) msgraph-core writes
# "depends_on": [] on every item; an empty one is not flagged, a non-empty one is
# (batch-unknown-member: Graph ignores it).
import asyncio, os, sys, time
from azure.core.credentials import AccessToken
from msgraph import GraphServiceClient
from msgraph_core.tasks.page_iterator import PageIterator
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph.generated.device_management.device_configurations.item.assign.assign_post_request_body import AssignPostRequestBody
from msgraph.generated.models.device_configuration_assignment import DeviceConfigurationAssignment
from msgraph.generated.models.group_assignment_target import GroupAssignmentTarget

GROUP = "3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"

class FixedToken:
    """A credential that needs no network: replay never signs in."""
    async def get_token(self, *scopes, **kwargs):
        return AccessToken("eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJzZGsifQ.c2ln", int(time.time()) + 3600)
    async def close(self): pass
    async def __aenter__(self): return self
    async def __aexit__(self, *a): pass

async def main():
    client = GraphServiceClient(FixedToken(), ["https://graph.microsoft.com/.default"])
    base = sys.argv[1] if len(sys.argv) > 1 else None
    if base is None and os.environ.get("GRAPH_VCR_URL") and not os.environ.get("HTTPS_PROXY"):
        base = os.environ["GRAPH_VCR_URL"] + "/v1.0"
    if base:
        client.request_adapter.base_url = base
    dm = client.device_management

    first = await dm.device_configurations.get()
    print("first page next link:", first.odata_next_link)
    configs = []
    pages = PageIterator(first, client.request_adapter)
    await pages.iterate(lambda c: configs.append(c) or True)
    print("configurations:", [c.id for c in configs])

    batch = BatchRequestContent()
    for c in configs:
        info = dm.device_configurations.by_device_configuration_id(c.id).assignments.to_get_request_information()
        batch.add_request(None, BatchRequestItem(request_information=info))
    answer = await client.batch.post(batch_request_content=batch)
    print("batch statuses:", sorted(answer.get_response_status_codes().values()))

    group = await client.groups.by_group_id(GROUP).get()
    print("group:", group.display_name)

    body = AssignPostRequestBody(assignments=[
        DeviceConfigurationAssignment(target=GroupAssignmentTarget(group_id=GROUP)),
    ])
    assigned = await dm.device_configurations.by_device_configuration_id(configs[0].id).assign.post(body)
    print("assigned:", len(assigned.value), "assignment(s)")

asyncio.run(main())
