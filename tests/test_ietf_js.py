"""tus-js-client speaking the IETF resumable-upload draft (``protocol: 'ietf-draft-05'``,
interop version 6) under Node, against a real ``jupyter server`` process under a
non-root base_url, with its token: careful creation then appends, the first chunk in
the creation request, a resume from the server's offset after an aborted upload, the
destination rules; and the same through an answer carrying a 104 (``send_104``).

The client is the lab extension's own copy (labextension/node_modules, installed by
``make test``). Every answer it read is logged by its ``onAfterResponse`` hook, so the
tests see that the whole exchange was the draft's (``Upload-Draft-Interop-Version: 6``
on each answer, never ``Tus-Resumable``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from .conftest import file_sha256
from .servers import JupyterProcess, run_tus_js

BASE_URL = "/user/rufh/"
CHUNK = 64 * 1024

NODE_UPLOAD = r"""
const fs = require('fs');
const http = require('http');
const o = JSON.parse(process.env.UPLOAD_OPTIONS);
const log = (event) => console.log(JSON.stringify(event));
// Interim (1xx) answers, which tus-js-client never sees: Node's own event.
const request = http.request;
http.request = function (...args) {
  const req = request.apply(this, args);
  req.on('information', (info) =>
    log({ interim: info.statusCode, location: info.headers.location }));
  return req;
};
const tus = require(process.env.TUS_JS_CLIENT);
const upload = new tus.Upload(fs.createReadStream(o.file), {
  endpoint: o.endpoint,
  uploadUrl: o.uploadUrl || null,
  protocol: 'ietf-draft-05',
  headers: o.headers,
  chunkSize: o.chunkSize || Infinity,
  uploadDataDuringCreation: !!o.duringCreation,
  metadata: o.metadata,
  retryDelays: [],  // a refusal fails the upload
  onAfterResponse(req, res) {
    const h = (name) => res.getHeader(name) ?? null;
    log({
      method: req.getMethod(),
      status: res.getStatus(),
      interop: h('Upload-Draft-Interop-Version'),
      tus: h('Tus-Resumable'),
      offset: h('Upload-Offset'),
      complete: h('Upload-Complete'),
      location: h('Location'),
    });
  },
  onChunkComplete(size, accepted) {
    log({ accepted });
    if (o.stopAfter && accepted >= o.stopAfter) {
      upload.abort().then(() => { log({ stopped: upload.url }); process.exit(0); });
    }
  },
  onError(err) { console.error(String(err)); process.exit(1); },
  onSuccess() { log({ done: upload.url }); },
});
upload.start();
"""


@pytest.fixture(scope="module")
def node_script(tmp_path_factory) -> Path:
    script = tmp_path_factory.mktemp("node") / "upload.js"
    script.write_text(NODE_UPLOAD)
    return script


def start_server(tmp_path: Path, *args: str) -> JupyterProcess:
    root = tmp_path / "root"
    root.mkdir()
    return JupyterProcess(root, base_url=BASE_URL, args=list(args)).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ietf-js"))
    yield server
    server.stop()


def tus_js(
    node_script: Path, server: JupyterProcess, src: Path, **options
) -> tuple[int, list, str]:
    """Run one upload; its exit code, the events it logged, its stderr."""
    done = run_tus_js(node_script, server, src, timeout=60, **options)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stderr


def answers(events: list[dict]) -> list[dict]:
    return [e for e in events if "method" in e]


def assert_spoke_the_draft(events: list[dict]) -> None:
    for answer in answers(events):
        assert answer["interop"] == "6" and answer["tus"] is None, answer


def make_file(tmp_path: Path, name: str, size: int) -> Path:
    src = tmp_path / name
    src.write_bytes(os.urandom(size))
    return src


def test_careful_creation_then_appends(node_script, server, tmp_path):
    src = make_file(tmp_path, "careful.bin", 5 * CHUNK + 1234)
    code, events, stderr = tus_js(
        node_script, server, src, chunkSize=CHUNK, metadata={"filename": src.name, "path": "js"}
    )
    assert code == 0, stderr
    assert_spoke_the_draft(events)
    assert not [e for e in events if "interim" in e]  # send_104 is off by default
    methods = [(a["method"], a["status"]) for a in answers(events)]
    assert methods == [("POST", 201)] + [("PATCH", 204)] * 6, methods
    last = answers(events)[-1]
    assert last["complete"] == "?1" and last["offset"] == str(src.stat().st_size)
    landed = server.root_dir / "js" / src.name
    assert file_sha256(landed) == file_sha256(src)
    url = events[-1]["done"]
    assert url.startswith(f"http://127.0.0.1:{server.port}{BASE_URL}api/tus/uploads/")


def test_first_chunk_in_the_creation(node_script, server, tmp_path):
    src = make_file(tmp_path, "during.bin", 3 * CHUNK)
    code, events, stderr = tus_js(node_script, server, src, chunkSize=CHUNK, duringCreation=True)
    assert code == 0, stderr
    assert_spoke_the_draft(events)
    first = answers(events)[0]
    assert (first["method"], first["status"], first["offset"]) == ("POST", 201, str(CHUNK))
    assert file_sha256(server.root_dir / src.name) == file_sha256(src)


def test_resume_after_an_aborted_upload(node_script, server, tmp_path):
    src = make_file(tmp_path, "resumed.bin", 6 * CHUNK + 99)
    code, events, stderr = tus_js(node_script, server, src, chunkSize=CHUNK, stopAfter=2 * CHUNK)
    assert code == 0, stderr
    url = events[-1]["stopped"]
    assert not (server.root_dir / src.name).exists()
    head = requests.head(url, headers={**server.auth, "Upload-Draft-Interop-Version": "8"})
    assert head.status_code == 204 and head.headers["Upload-Offset"] == str(2 * CHUNK)
    assert head.headers["Upload-Complete"] == "?0"
    # A new client given the upload's URL asks for the offset and sends only the rest.
    code, events, stderr = tus_js(node_script, server, src, chunkSize=CHUNK, uploadUrl=url)
    assert code == 0, stderr
    assert_spoke_the_draft(events)
    first = answers(events)[0]
    assert (first["method"], first["status"], first["offset"]) == ("HEAD", 204, str(2 * CHUNK))
    accepted = [e["accepted"] for e in events if "accepted" in e]
    assert accepted[0] == 3 * CHUNK and accepted[-1] == src.stat().st_size
    assert file_sha256(server.root_dir / src.name) == file_sha256(src)


def test_destination_rules_and_auth(node_script, server, tmp_path):
    src = make_file(tmp_path, "exists.txt", 100)
    (server.root_dir / "exists.txt").write_bytes(b"mine")
    code, _, stderr = tus_js(node_script, server, src)
    assert code == 1 and "409" in stderr and "already exists" in stderr
    assert (server.root_dir / "exists.txt").read_bytes() == b"mine"
    hidden = make_file(tmp_path, ".secret", 10)
    code, _, stderr = tus_js(node_script, server, hidden)
    assert code == 1 and "403" in stderr and "hidden" in stderr
    code, _, stderr = tus_js(node_script, server, src, headers={})  # no token
    assert code == 1 and "403" in stderr


def test_through_answers_with_a_104(node_script, tmp_path):
    """With ``send_104``, creations are answered 104 then 201: Node's HTTP client takes
    the interim answer in its stride."""
    server = start_server(tmp_path, "--TusApp.send_104=True")
    try:
        src = make_file(tmp_path, "interim.bin", 2 * CHUNK + 5)
        code, events, stderr = tus_js(
            node_script, server, src, chunkSize=CHUNK, duringCreation=True
        )
        assert code == 0, stderr
        interim = [e for e in events if "interim" in e]
        creation = answers(events)[0]
        assert interim == [{"interim": 104, "location": creation["location"]}], events
        assert creation["method"] == "POST" and creation["status"] == 201
        assert file_sha256(server.root_dir / src.name) == file_sha256(src)
    finally:
        server.stop()
