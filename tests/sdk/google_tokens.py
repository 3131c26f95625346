"""Google SDK client for tests/e2e/sdk.rs, run under `credcache exec --sdk`.

google.auth.default() on the metadata server, two refreshes (google-auth
asks by the account's email on the second), the project id, and, given an
audience, google.oauth2.id_token.fetch_id_token. Prints one JSON object.
"""

import json
import sys

import google.auth
import google.auth.transport.requests
from google.oauth2 import id_token

request = google.auth.transport.requests.Request()
credentials, project = google.auth.default()
credentials.refresh(request)
first = credentials.token
credentials.refresh(request)
out = {
    "token": first,
    "again": credentials.token,
    "project": project,
    "email": credentials.service_account_email,
}
if len(sys.argv) > 1:
    out["id_token"] = id_token.fetch_id_token(request, sys.argv[1])
print(json.dumps(out))
