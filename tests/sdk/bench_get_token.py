"""A cached SDK get_token through the daemon against the Azure CLI path,
for BENCHMARKS.md. Run under `credcache exec --sdk AZURE_CRED` with a
stand-in `az` on PATH that prints a token at once (see BENCHMARKS.md), so
the CLI figure is only the mechanism (a process per token), not Entra.

Each round makes a new credential object, as a new SDK process would, so
no in-process cache answers: ManagedIdentityCredential asks the daemon's
endpoint (which answers from its cache), AzureCliCredential runs `az`.
Prints the median and 90th percentile of N rounds of each, in ms.
"""

import statistics
import sys
import time

from azure.identity import AzureCliCredential, ManagedIdentityCredential

SCOPE = "https://vault.azure.net/.default"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def measure(make):
    make().get_token(SCOPE)  # warm: the daemon's cache, Python's imports
    times = []
    for _ in range(N):
        start = time.perf_counter()
        make().get_token(SCOPE)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


for label, make in [
    ("ManagedIdentityCredential via credcache", ManagedIdentityCredential),
    ("AzureCliCredential, stand-in az", AzureCliCredential),
]:
    p50, p90 = measure(make)
    print(f"{label}: median {p50:.2f} ms, p90 {p90:.2f} ms ({N} rounds)")
