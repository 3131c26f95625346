"""Lives across a daemon restart, for tests/e2e/sdk.rs: prints a token for
the first resource, waits for a line on stdin (the test restarts the
daemon meanwhile), then prints a token for the second resource, which the
SDK has not cached, so it must ask the endpoint again.
"""

import sys

from azure.identity import ManagedIdentityCredential

credential = ManagedIdentityCredential()
print(credential.get_token(sys.argv[1] + "/.default").token, flush=True)
sys.stdin.readline()
print(credential.get_token(sys.argv[2] + "/.default").token, flush=True)
