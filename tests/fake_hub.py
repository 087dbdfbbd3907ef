"""A Hugging Face hub stand-in on 127.0.0.1, for tests that must never reach the network.

The hub client (huggingface_hub) resolves a file with `HEAD {endpoint}/{repo}/resolve/{rev}/
{file}` (datasets: `/datasets/{repo}/...`), reads `X-Repo-Commit` and `ETag`, then GETs it; a
refusal is told apart by status and `X-Error-Code` (RepoNotFound, GatedRepo, RevisionNotFound,
EntryNotFound). `FakeHub` serves exactly that, per repository:

  files     a repository that exists, served from a local directory (a tiny saved model);
  status    a fixed refusal: (HTTP status, X-Error-Code or None);
  drop      headers promising the file, then the connection closed mid-body (GET), or the
            connection closed before any answer (HEAD), as a hub that goes away does.

Folder listings (`/api/models/{repo}/tree/{rev}/{path}`) answer "no such folder".
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: Path | None = None
    status: tuple[int, str | None] | None = None
    drop: set[str] = field(default_factory=set)  # file names whose GET is cut mid-body ("*": all)
    drop_head: bool = False
    revisions: tuple[str, ...] = ("main", COMMIT)


class FakeHub:
    """Start with `with FakeHub({...}) as hub:`; `hub.url` is the HF_ENDPOINT to set."""

    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, authorization)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("authorization")))
                tree = _tree(self.path)
                if tree is not None:  # listing a folder (transformers asks for chat templates)
                    known = tree in hub.repos and hub.repos[tree].status is None
                    return self._refuse(404, "EntryNotFound" if known else "RepoNotFound")
                parsed = _parse(self.path)
                if parsed is None or parsed[0] not in hub.repos:
                    return self._refuse(404, "RepoNotFound")
                repo_id, revision, filename = parsed
                repo = hub.repos[repo_id]
                if repo.drop_head or (body and ({filename, "*"} & repo.drop)):
                    return self._drop(body, repo, filename)
                if repo.status is not None:
                    status, code = repo.status
                    if code == "GatedRepo" and self.headers.get("authorization"):
                        status = 403  # a token without access to the gated repository
                    return self._refuse(status, code)
                if revision not in repo.revisions:
                    return self._refuse(404, "RevisionNotFound")
                path = (repo.files / filename) if repo.files is not None else None
                if path is None or not path.is_file():
                    return self._refuse(404, "EntryNotFound")
                data = path.read_bytes()
                self.send_response(200)
                self._common(len(data), hashlib.sha256(data).hexdigest())
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _common(self, size: int, etag: str) -> None:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(size))
                self.send_header("Content-Type", "application/octet-stream")

            def _refuse(self, status: int, code: str | None) -> None:
                payload = b'{"error": "refused by the fake hub"}'
                self.send_response(status)
                if code is not None:
                    self.send_header("X-Error-Code", code)
                    self.send_header("X-Error-Message", f"fake hub: {code}")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _drop(self, body: bool, repo: Repo, filename: str) -> None:
                """HEAD: close without answering. GET: promise the whole file, send a tenth,
                close."""
                if body and repo.files is not None and (repo.files / filename).is_file():
                    data = (repo.files / filename).read_bytes()
                    self.send_response(200)
                    self._common(len(data), hashlib.sha256(data).hexdigest())
                    self.end_headers()
                    self.wfile.write(data[: max(1, len(data) // 10)])
                    self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        return Handler


def _parse(path: str) -> tuple[str, str, str] | None:
    """(repo id, revision, file) of a resolve URL; datasets keep their `datasets/` prefix off."""
    parts = path.split("?")[0].strip("/").split("/")
    if parts and parts[0] == "datasets":
        parts = parts[1:]
    if len(parts) < 5 or parts[2] != "resolve":
        return None
    return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])


def _tree(path: str) -> str | None:
    """The repo id of an `/api/models/{repo}/tree/...` listing request, else None."""
    parts = path.split("?")[0].strip("/").split("/")
    if len(parts) >= 5 and parts[:2] == ["api", "models"] and parts[4] == "tree":
        return f"{parts[2]}/{parts[3]}"
    return None


def closed_port_url() -> str:
    """An endpoint nobody listens on: the hub unreachable."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
