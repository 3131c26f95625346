// Node.js SDK client for tests/e2e/sdk.rs, run under `credcache exec --sdk`.
// Usage: node node_tokens.mjs AUDIENCE RESOURCE...
// @azure/identity's ManagedIdentityCredential and DefaultAzureCredential for
// each resource, google-auth-library's GoogleAuth token, project id and ID
// token for AUDIENCE; prints one JSON object.

import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";
import { GoogleAuth } from "google-auth-library";

const [audience, ...resources] = process.argv.slice(2);
const out = {};
for (const resource of resources) {
  const scope = `${resource}/.default`;
  out[`mi ${resource}`] = (await new ManagedIdentityCredential().getToken(scope)).token;
  out[`dac ${resource}`] = (await new DefaultAzureCredential().getToken(scope)).token;
}
const auth = new GoogleAuth({ scopes: ["https://www.googleapis.com/auth/cloud-platform"] });
const client = await auth.getClient();
out.token = (await client.getAccessToken()).token;
out.project = await auth.getProjectId();
const idClient = await auth.getIdTokenClient(audience);
out.id_token = await idClient.idTokenProvider.fetchIdToken(audience);
console.log(JSON.stringify(out));
