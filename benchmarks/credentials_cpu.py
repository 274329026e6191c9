"""CPU of sealed credentials against today's plaintext keys, per operation, in this process.

    python -m benchmarks.credentials_cpu [--rounds 2000] [--tenants 100] [--syncs 1000]

Times, with the local development KEK (a Tink keyset in a temporary directory: the same
envelope code as production, the KEK operation local instead of a Cloud KMS request):

- the plaintext parse a sync does today when it reads keys (``AlpacaKeys.from_document``);
- a cold open (a ciphertext this instance has not opened: unwrap the data key, decrypt,
  validate) — what a sync pays once per new credential per instance;
- a warm open (the same ciphertext again: answered from the vault's memory);
- a seal (what the secrets trigger pays per key write) and a rewrap (per document after a
  rotation).

Then the KEK operations of ``--syncs`` syncs spread over ``--tenants`` tenants whose keys do
not change (each sync opening its tenant's document): one per tenant, not one per sync. A warm
sync whose worker holds the ``keys_version`` does not open at all.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agenttrader.credentials import AlpacaKeys, LocalKek, Vault, parse_plaintext

PAPER = "https://paper-api.alpaca.markets"


def _document(n: int) -> dict[str, Any]:
    return {
        "key_id": f"PKBENCH{n:013d}",
        "secret_key": f"{n:08d}" + "s" * 32,
        "base_url": PAPER,
    }


def _path(uid: str) -> str:
    return f"users/{uid}/secrets/alpaca"


def cpu_per_call(calls: Sequence[Callable[[], object]]) -> float:
    """Microseconds of this process's CPU per call, each call run once."""
    started = time.process_time_ns()
    for call in calls:
        call()
    return (time.process_time_ns() - started) / len(calls) / 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.credentials_cpu")
    parser.add_argument("--rounds", type=int, default=2000, help="calls timed per figure")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--syncs", type=int, default=1000)
    args = parser.parse_args(argv)
    rounds = args.rounds

    with tempfile.TemporaryDirectory() as directory:
        vault = Vault(LocalKek("demo-bench", Path(directory)), memo_capacity=rounds + 1)
        docs = [_document(n) for n in range(rounds)]
        uids = [f"tenant-{n:07d}-{'x' * 13}" for n in range(rounds)]
        keys = [parse_plaintext(doc) for doc in docs]
        vault.seal(keys[0], uids[0], _path(uids[0]), None)  # the keyset is made, Tink warm

        plaintext = cpu_per_call([lambda d=d: AlpacaKeys.from_document(d) for d in docs])
        seal_calls: list[Callable[[], object]] = [
            lambda k=k, u=u: vault.seal(k, u, _path(u), "1")
            for k, u in zip(keys, uids, strict=True)
        ]
        seal = cpu_per_call(seal_calls)
        sealed = [vault.seal(k, u, _path(u), "1") for k, u in zip(keys, uids, strict=True)]
        cold = cpu_per_call(
            [lambda s=s, u=u: vault.open(s, u, _path(u)) for s, u in zip(sealed, uids, strict=True)]
        )
        warm = cpu_per_call(
            [lambda s=s, u=u: vault.open(s, u, _path(u)) for s, u in zip(sealed, uids, strict=True)]
        )
        rewrap = cpu_per_call([lambda s=s: vault.rewrap(s) for s in sealed])

        fleet = Vault(LocalKek("demo-bench", Path(directory)))
        tenants = sealed[: args.tenants]
        before = fleet.stats().kek.total
        for sync in range(args.syncs):
            n = sync % len(tenants)
            fleet.open(tenants[n], uids[n], _path(uids[n]))
        kek_calls = fleet.stats().kek.total - before

    print(f"CPU per operation, {rounds} calls each (local development KEK, this process):")
    print(f"  plaintext keys parsed (today)   {plaintext:8.1f} µs   1.0x")
    for label, value in (
        ("cold open (new ciphertext)", cold),
        ("warm open (remembered)", warm),
        ("seal (trigger, per key write)", seal),
        ("rewrap (per doc, per rotation)", rewrap),
    ):
        print(f"  {label:<31} {value:8.1f} µs {value / plaintext:6.1f}x")
    print(
        f"  a cold sync pays {cold - plaintext:.1f} µs more than today, a warm one "
        f"{max(warm - plaintext, 0.0):.1f} µs (0 when the worker holds the keys_version)"
    )
    per_thousand = kek_calls * 1000 / args.syncs
    print(
        f"KEK operations for {args.syncs} syncs over {len(tenants)} tenants with unchanged keys: "
        f"{kek_calls} ({per_thousand:.0f} per 1,000 syncs; Cloud KMS bills each as one request)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
