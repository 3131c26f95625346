"""Azure SDK client for tests/e2e/sdk.rs, run under `credcache exec --sdk`.

For each resource on the command line, asks ManagedIdentityCredential and
DefaultAzureCredential for a token of `RESOURCE/.default`, and prints one
JSON object: {"mi RESOURCE": token, "dac RESOURCE": token, ...}.
"""

import json
import sys

from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

out = {}
for resource in sys.argv[1:]:
    scope = resource + "/.default"
    out["mi " + resource] = ManagedIdentityCredential().get_token(scope).token
    out["dac " + resource] = DefaultAzureCredential().get_token(scope).token
print(json.dumps(out))
