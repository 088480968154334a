// Calls the seed assign action with @microsoft/microsoft-graph-client through graph-vcr.
// Run by hand on 2026-11-29 with Node 20.20.2, @microsoft/microsoft-graph-client 3.0.7,
// https-proxy-agent 9.1.0, node-fetch 2.7.0, against `graph-vcr replay --cassette example`:
//   npm install @microsoft/microsoft-graph-client https-proxy-agent node-fetch@2
//   HTTPS_PROXY=http://127.0.0.1:8080 NODE_EXTRA_CA_CERTS=CA.pem node graph_client_assign.js
//   node graph_client_assign.js http://127.0.0.1:8080/      (base-URL mode)
// Both got the recorded 204. Not run by CI (it needs npm packages).
// Run again on 2026-12-01 (the same versions) under the wrapper, which sets HTTPS_PROXY and
// NODE_EXTRA_CA_CERTS (a bundle with graph-vcr's CA) itself:
//   graph-vcr replay --cassette example --forward -- node graph_client_assign.js
// got the 204, result passed, exit 0. In base-URL mode
//   graph-vcr replay --cassette example -- sh -c 'node graph_client_assign.js $GRAPH_VCR_URL/'
// got the 204 but the run fails (exit 1) on the `auth-missing` contract error noted below.
// Node 18+ has a global fetch (undici) that ignores `agent`; node-fetch honours it.
const nodeFetch = require("node-fetch");
globalThis.fetch = nodeFetch;
globalThis.Headers = nodeFetch.Headers;
globalThis.Request = nodeFetch.Request;
globalThis.Response = nodeFetch.Response;
const { Client } = require("@microsoft/microsoft-graph-client");
const { HttpsProxyAgent } = require("https-proxy-agent");

const base = process.argv[2];
const options = {
  authProvider: { getAccessToken: async () => "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJub2RlIn0.c2ln" },
};
if (base) {
  options.baseUrl = base;
  // Note: this client attaches the token only to https:// URLs, so in base-URL mode
  // graph-vcr sees no Authorization header and flags `auth-missing`. Prefer HTTPS_PROXY.
} else {
  options.fetchOptions = { agent: new HttpsProxyAgent(process.env.HTTPS_PROXY) };
}
const client = Client.initWithMiddleware(options);
client
  .api("/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign")
  .post({
    enrollmentConfigurationAssignments: [
      {
        id: "705b021c-021c-705b-1c02-5b701c025b70",
        target: {
          "@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget",
          collectionId: "Collection Id value",
        },
      },
    ],
  })
  .then(() => console.log("assign returned without error"))
  .catch((e) => { console.error("failed:", e.statusCode, e.message); process.exit(1); });
