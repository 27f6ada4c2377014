"""A model hub on 127.0.0.1 that speaks enough of the Hugging Face hub's file API for huggingface_hub's
own `hf_hub_download`: HEAD and GET `/{org}/{repo}/resolve/{revision}/{filename}` with the headers the
client reads (ETag and X-Linked-Etag: the LFS sha256, X-Linked-Size, X-Repo-Commit) and Range.

Tests point `HF_ENDPOINT` at it, so the product's download code runs for real with no network. A
test may hold downloads back (`gate`), have the hub publish a wrong sha256, or cut a download's
connection half-way once (the client then resumes with a Range request).
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")


class LocalHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.published_sha: dict[tuple[str, str], str] = {}
        self.cut_once: set[tuple[str, str]] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the test reads `hub.requests`
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, *, body: bool):
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                match = _RESOLVE.match(self.path.split("?")[0])
                key = (match["repo"], match["filename"]) if match else None
                if key not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[key]
                sha = hub.published_sha.get(key) or hashlib.sha256(data).hexdigest()
                start = 0
                if body and self.headers.get("Range"):
                    start = int(re.match(r"bytes=(\d+)-", self.headers["Range"])[1])
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                hub.gate.wait(timeout=120)
                if key in hub.cut_once and not start:
                    hub.cut_once.discard(key)
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return  # the promised length never arrives: the client sees the connection drop
                self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, filename: str, data: bytes) -> None:
        self.files[(repo, filename)] = data

    def gets(self, repo: str, filename: str) -> list[str | None]:
        """The Range header of each GET of the file (None: from the start)."""
        return [r for method, path, r in self.requests
                if method == "GET" and path.startswith(f"/{repo}/") and path.endswith("/" + filename)]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
