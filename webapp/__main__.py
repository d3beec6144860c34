"""Development server: ``python -m webapp`` (APP_ENV defaults to development here; never use it in the cluster).

Reads the environment like the image does; on a bad setting, or Redis not answering within
STARTUP_WAIT_S, prints one line to stderr and exits 2.
"""

from __future__ import annotations

import os
import sys

from common.logs import configure
from common.settings import ConfigError


def main() -> int:
    from webapp.settings import WebSettings

    environ = {"APP_ENV": "development", **os.environ}
    try:
        settings = WebSettings.from_env(environ)
        settings.check()
    except ConfigError as exc:
        print(f"webapp: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_json)
    from webapp.runtime import StartupError, wait_for_redis

    try:
        wait_for_redis(settings)
    except StartupError as exc:
        print(f"webapp: {exc}", file=sys.stderr)
        return 2
    from webapp.app import create_app

    app = create_app(settings)
    # threaded, no reloader, never the debugger (remote code execution). The cache is fed by another
    # process: `python -m webapp.feeder` (make webapp-feeder).
    app.run(host=settings.bind_host, port=settings.port, debug=False, use_reloader=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
