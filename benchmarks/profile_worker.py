"""Profile of the worker path: ``SyncWorker.handle`` under pyinstrument, against the Firestore
emulator and the Alpaca simulator at 0 ms latency (so the profile shows CPU, not waiting).

    python -m benchmarks.profile_worker [--tenants 300] [--html profile.html]

It seeds N configured tenants, syncs each once to warm the instance (keys cached, connections
open), then profiles a second, warm pass in this thread — the path every scheduled sync takes —
and prints the call tree (frames under 2 % hidden) and the CPU per sync.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from agenttrader import paths
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from devtools import emulators
from devtools.localstack.seed import seed_user
from devtools.simulator import AlpacaSimulator
from sync_worker.worker import SyncWorker


def deliveries(uids: Sequence[str], versions: dict[str, str | None]) -> list[PubsubDelivery]:
    now = datetime.now(UTC)
    pulse = f"profile-{uuid.uuid4().hex[:6]}"
    out = []
    for uid in uids:
        request = SyncRequest(
            uid, Reason.SCHEDULE, now, pulse_id=pulse, keys_version=versions.get(uid)
        )
        out.append(
            PubsubDelivery(uuid.uuid4().hex, request.to_bytes(), request.attributes(), now, 1)
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from pyinstrument import Profiler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)
    project = f"profile-{uuid.uuid4().hex[:6]}"
    with (
        emulators.running(emulators.FIRESTORE, emulators.PUBSUB, project=project) as hosts,
        AlpacaSimulator() as sim,
    ):
        os.environ.update(
            {**hosts, "GOOGLE_CLOUD_PROJECT": project, "ALPACA_ALLOWED_BASE_URLS": sim.base_url}
        )
        deps = Deps(Settings.from_env())
        db = deps.firestore
        uids = [f"profile-{i:05d}" for i in range(args.tenants)]
        for uid in uids:
            tenant = sim.add_tenant()
            seed_user(
                db,
                uid,
                keys={
                    "key_id": tenant.key_id,
                    "secret_key": tenant.secret_key,
                    "base_url": sim.base_url,
                },
            )
            db.document(paths.alpaca_config_doc(uid)).update({"configuredAt": datetime.now(UTC)})
        from publisher.roster import refresh

        versions = {uid: refresh(db, uid).keys_version for uid in uids}
        worker = SyncWorker(deps)
        for delivery in deliveries(uids, versions):  # cold: keys read, connections opened
            worker.handle(delivery)
        warm = deliveries(uids, versions)
        profiler = Profiler(interval=0.0005)
        wall, cpu = time.monotonic(), time.process_time()
        profiler.start()
        results = [worker.handle(delivery) for delivery in warm]
        profiler.stop()
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        print(profiler.output_text(unicode=True, color=False, show_all=False, time="percent"))
        outcomes = {str(r) for r in results}
        print(
            f"warm pass: {len(warm)} syncs ({', '.join(sorted(outcomes))}) in {wall:.2f} s, "
            f"CPU of this process {cpu * 1000 / len(warm):.2f} ms/sync (simulator and "
            f"profiler included; the Firestore emulator is another process)"
        )
        if args.html:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(profiler.output_html())
            print(f"HTML report: {args.html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
