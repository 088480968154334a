# Calls the seed assign action with msgraph-sdk, as a user's code would.
# Run by hand on 2026-11-29 with Python 3.11, msgraph-sdk 1.65.0 (httpx 0.28.1), against
# `graph-vcr replay --cassette example` (add --forward for the proxy line):
#   pip install msgraph-sdk
#   cat /etc/ssl/certs/ca-certificates.crt CA.pem > bundle.pem
#   HTTPS_PROXY=http://127.0.0.1:8080 SSL_CERT_FILE=bundle.pem python msgraph_sdk_assign.py
#   python msgraph_sdk_assign.py http://127.0.0.1:8080/v1.0      (base-URL mode)
# Both got the recorded 204, with the token sent. Not run by CI (it needs PyPI packages).
# Run again on 2026-12-01 (msgraph-sdk 1.65.0) under the wrapper, which sets the environment:
#   graph-vcr replay --cassette example -- python msgraph_sdk_assign.py             (base URL)
#   graph-vcr replay --cassette example --forward -- python msgraph_sdk_assign.py   (proxy, CA)
# Both: "assign returned without error", result passed, exit 0. With --cassette exmaple the
# SDK raised ODataError "there is no cassette "exmaple" …; cassettes there (closest first):
# example (status 501)", the script exited 1 and so did graph-vcr.
import asyncio, os, sys, time
from azure.core.credentials import AccessToken
from msgraph import GraphServiceClient
from msgraph.generated.device_management.device_enrollment_configurations.item.assign.assign_post_request_body import AssignPostRequestBody
from msgraph.generated.models.enrollment_configuration_assignment import EnrollmentConfigurationAssignment
from msgraph.generated.models.configuration_manager_collection_assignment_target import ConfigurationManagerCollectionAssignmentTarget

class FixedToken:
    """A credential that needs no network: replay never signs in."""
    async def get_token(self, *scopes, **kwargs):
        return AccessToken("eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJzZGsifQ.c2ln", int(time.time()) + 3600)
    async def close(self): pass
    async def __aenter__(self): return self
    async def __aexit__(self, *a): pass

async def main():
    client = GraphServiceClient(FixedToken(), ["https://graph.microsoft.com/.default"])
    # Base-URL mode: an argument, or the wrapper's GRAPH_VCR_URL (`graph-vcr replay -- python …`).
    base = sys.argv[1] if len(sys.argv) > 1 else None
    if base is None and os.environ.get("GRAPH_VCR_URL") and not os.environ.get("HTTPS_PROXY"):
        base = os.environ["GRAPH_VCR_URL"] + "/v1.0"
    if base:
        client.request_adapter.base_url = base
    body = AssignPostRequestBody(enrollment_configuration_assignments=[
        EnrollmentConfigurationAssignment(
            id="705b021c-021c-705b-1c02-5b701c025b70",
            target=ConfigurationManagerCollectionAssignmentTarget(collection_id="Collection Id value"),
        )
    ])
    await client.device_management.device_enrollment_configurations.by_device_enrollment_configuration_id(
        "b0c1d2e3-0000-4000-8000-000000000001").assign.post(body)
    print("assign returned without error")

asyncio.run(main())
