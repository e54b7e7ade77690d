"""A real HTTP server on 127.0.0.1 for the download tests: serves one folder, prints its port.

    python tests/http_server.py DIR

Binds a free port on 127.0.0.1, prints the port on a line of its own, then serves DIR
until it is stopped. A path under ``/cut/`` serves the named file of DIR announcing its
full size but sending only the first half before closing the connection: a download cut
short. Started (and stopped) by the ``http_server`` fixture of tests/data/test_data_http.py.
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path
from typing import Any


class Handler(http.server.SimpleHTTPRequestHandler):
    """The standard file handler, plus ``/cut/<name>`` and no request log on stderr."""

    def do_GET(self) -> None:
        if self.path.startswith("/cut/"):
            self._cut(self.path.removeprefix("/cut/"))
        else:
            super().do_GET()

    def _cut(self, name: str) -> None:
        data = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    handler = functools.partial(Handler, directory=sys.argv[1])
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
