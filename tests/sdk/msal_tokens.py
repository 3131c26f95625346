"""The Azure CLI's way to a managed-identity token, for tests/e2e/sdk_clients.rs.

`az login --identity` and `az account get-access-token` (azure-cli 2.7x and
later) ask MSAL Python's ManagedIdentityClient, not azure-identity. Run
under `credcache exec --sdk`, this asks it for a token of each resource on
the command line, twice (the second from MSAL's own cache), and prints one
JSON object: {"RESOURCE": token, ...}. An MSAL error is printed whole on
stderr, exit 1.
"""

import json
import sys

import msal
import requests

client = msal.ManagedIdentityClient(
    msal.SystemAssignedManagedIdentity(), http_client=requests.Session()
)
out = {}
for resource in sys.argv[1:]:
    for _ in range(2):
        result = client.acquire_token_for_client(resource=resource)
        if "access_token" not in result:
            print(json.dumps(result), file=sys.stderr)
            sys.exit(1)
    out[resource] = result["access_token"]
print(json.dumps(out))
