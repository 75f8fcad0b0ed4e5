"""A local stand-in for the Hugging Face Hub: the endpoints `HfApi` calls to create a repo, list its tree,
read its info, validate a card's YAML, pre-upload and commit. Files live in memory; every commit is kept,
so tests can count them. Writes need `Authorization: Bearer <token>`, as on the hub.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from fr_agent.playbooks.scripted_llm import JsonHandler

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=lambda: {".gitattributes": GITATTRIBUTES})
    commits: list[Commit] = field(default_factory=list)

    def commit(self, message: str, added: dict[str, bytes], deleted: list[str]) -> Commit:
        self.files.update(added)
        for path in deleted:
            self.files.pop(path)
        oid = hashlib.sha1(f"{len(self.commits)}:{message}:{sorted(self.files)}".encode()).hexdigest()
        self.commits.append(Commit(oid=oid, message=message, added=sorted(added), deleted=sorted(deleted)))
        return self.commits[-1]


REPO = r"(?P<repo>[^/]+/[^/]+)"


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(JsonHandler):
            def repo(self, match: re.Match) -> Repo | None:
                """The repo the path names; None, answered with the hub's 404, when there is none."""
                repo = hub.repos.get(match["repo"])
                if repo is None:
                    self.send_json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return repo

            def authorised(self) -> bool:
                if self.headers.get("authorization") == f"Bearer {hub.token}":
                    return True
                self.send_json(
                    401,
                    {"error": "Invalid credentials in Authorization header"},
                    {"X-Error-Message": "Invalid credentials in Authorization header"},
                )
                return False

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                path = self.path.split("?")[0]
                hub.requests.append(("GET", path))
                if m := re.fullmatch(rf"/api/models/{REPO}/tree/[^/]+", path):
                    if (repo := self.repo(m)) is None:
                        return None
                    return self.send_json(
                        200,
                        [
                            {"type": "file", "oid": git_sha1(data), "size": len(data), "path": name}
                            for name, data in sorted(repo.files.items())
                        ],
                    )
                if m := re.fullmatch(rf"/api/models/{REPO}(/revision/[^/]+)?", path):
                    if (repo := self.repo(m)) is None:
                        return None
                    return self.send_json(
                        200,
                        {
                            "id": m["repo"],
                            "sha": repo.commits[-1].oid,
                            "private": repo.private,
                            "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                        },
                    )
                self.send_json(404, {"error": f"no route GET {path}"})

            def do_POST(self):
                path = self.path.split("?")[0]
                hub.requests.append(("POST", path))
                body = self.body()
                if path == "/api/validate-yaml":
                    return self.send_json(200, {"errors": [], "warnings": []})
                if not self.authorised():
                    return None
                if path == "/api/repos/create":
                    data = json.loads(body)
                    repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    if repo_id in hub.repos:
                        return self.send_json(409, {"error": "You already created this model repo"})
                    repo = hub.repos[repo_id] = Repo(private=data.get("visibility", "public") == "private")
                    repo.commit("initial commit", {}, [])
                    return self.send_json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                if m := re.fullmatch(rf"/api/models/{REPO}/preupload/[^/]+", path):
                    if (repo := self.repo(m)) is None:
                        return None
                    files = json.loads(body)["files"]
                    return self.send_json(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "regular",
                                    "shouldIgnore": False,
                                    "oid": git_sha1(repo.files[f["path"]]) if f["path"] in repo.files else None,
                                }
                                for f in files
                            ]
                        },
                    )
                if m := re.fullmatch(rf"/api/models/{REPO}/commit/[^/]+", path):
                    if (repo := self.repo(m)) is None:
                        return None
                    message, added, deleted = "", {}, []
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            message = item["value"]["summary"]
                        elif item["key"] == "file":
                            added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] == "deletedFile":
                            deleted.append(item["value"]["path"])
                        else:
                            return self.send_json(400, {"error": f"unsupported commit entry {item['key']}"})
                    commit = repo.commit(message, added, deleted)
                    return self.send_json(
                        200,
                        {
                            "commitUrl": f"{hub.url}/{m['repo']}/commit/{commit.oid}",
                            "commitOid": commit.oid,
                            "success": True,
                        },
                    )
                self.send_json(404, {"error": f"no route POST {path}"})

        return Handler
