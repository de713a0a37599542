"""`huey` for `huey_consumer huey_config.huey -w 2 -k thread`: the same tasks as the app.

Settings come from the environment (and OPTIINFRA_CONFIG) exactly as for `optiinfra-tui`.
"""

import sys

from optiinfra_tui.errors import OptiInfraError
from optiinfra_tui.worker.agent import attach_to_plain_consumer
from optiinfra_tui.worker.runtime import get_runtime
from optiinfra_tui.worker.startup import prepare_process

prepare_process()  # before huey_consumer starts its worker threads
try:
    runtime = get_runtime()
    runtime.settings.alert_urls()  # a webhook without its URL variable is a start-up error
    # In embedded mode (chDB) one process per data dir runs the tasks: not this one if another
    # already does, or every task it took would be handed back.
    runtime.claim_store("huey_consumer")
except OptiInfraError as exc:
    print(f"optiinfra: {exc}", file=sys.stderr)
    sys.exit(2)

attach_to_plain_consumer(runtime)
huey = runtime.huey
