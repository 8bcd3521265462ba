"""Hooks (``c.TusApp.pre_create``, ``post_finish``, ``pre_terminate``), each as a plain
function and as an ``async def``, and the examples of docs/operations.md as written."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import nbformat
import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import TraitError
from traitlets.config import Config

from jupyter_tus import metrics
from jupyter_tus.app import TusApp
from jupyter_tus.hooks import HookRefused

OPERATIONS = Path(__file__).parent.parent / "docs" / "operations.md"


USER = "alice"


class Alice(IdentityProvider):
    """The token's user is alice (jupyter-server's default makes up a new one for
    every token request), as a hub's user would be."""

    def generate_anonymous_user(self, handler) -> User:
        return User(username=USER, name="Alice")


@pytest.fixture
def jp_server_config(tus_config):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_tus": True},
            "identity_provider_class": Alice,
        },
        "TusApp": tus_config,
    }


def listing(staging) -> list[str]:
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def failures(hook: str) -> float:
    return metrics.HOOK_FAILURES.labels(hook=hook)._value.get()


def make(kind: str, body):
    """``body`` as a plain function or as an async one; each call recorded, with the
    thread it ran in."""
    calls: list[tuple] = []

    def record(*args):
        calls.append((threading.current_thread(), *args))
        return body(*args)

    if kind == "sync":
        hook = record
    else:

        async def hook(*args):
            return record(*args)

    hook.calls = calls
    return hook


KINDS = ["sync", "async"]


async def me(jp_fetch) -> str:
    """The username jupyter-server gives this test's requests."""
    username = json.loads((await jp_fetch("api", "me")).body)["identity"]["username"]
    assert username == USER
    return username


# ----------------------------------------------------------- pre_create


@pytest.mark.parametrize("kind", KINDS)
async def test_pre_create_sees_who_asks_and_may_move_the_file(
    kind, jp_fetch, tus, jp_root_dir, tus_app
):
    def body(info, context):
        if kind == "sync":
            info.metadata["path"] = "by-hook"  # changed in place
            return None
        return {**info.metadata, "path": "by-hook", "tag": "seen"}  # or returned

    hook = make(kind, body)
    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=hook)
    uid = await tus.create_id(5, {"filename": "a.txt", "path": "asked"})
    assert (await tus.patch(uid, 0, b"hello")).code == 204
    assert (jp_root_dir / "by-hook" / "a.txt").read_bytes() == b"hello"
    assert not (jp_root_dir / "asked").exists()
    [(thread, info, context)] = hook.calls
    loop_thread = threading.current_thread()
    assert (thread is loop_thread) == (kind == "async")  # plain functions off the loop
    assert info.size == 5 and info.id == "" and not info.is_partial
    assert context.username == await me(jp_fetch)
    assert context.remote_ip == "127.0.0.1"
    assert context.method == "POST"
    assert context.root_dir == str(Path(jp_root_dir).resolve())
    assert context.headers["Tus-Resumable"] == "1.0.0"
    assert "Authorization" not in context.headers and "Cookie" not in context.headers
    head = await tus.head(uid)
    assert ("tag" in head.headers["Upload-Metadata"]) == (kind == "async")


@pytest.mark.parametrize("kind", KINDS)
async def test_pre_create_may_refuse_and_nothing_is_created(kind, tus, tus_app, staging):
    def body(info, context):
        raise HookRefused(415, f"{info.metadata['filename']!r}: no programs here")

    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=make(kind, body))
    before = listing(staging)
    errors = metrics.ERRORS.labels(status="415", code="HookRefused")._value.get()
    r = await tus.create(5, {"filename": "setup.exe"}, body=b"MZ...")
    assert r.code == 415
    assert json.loads(r.body)["message"] == "'setup.exe': no programs here"
    assert "Location" not in r.headers
    assert listing(staging) == before
    assert metrics.ERRORS.labels(status="415", code="HookRefused")._value.get() == errors + 1


async def test_a_refusal_with_an_unusual_status_keeps_it(tus, tus_app):
    def body(info, context):
        raise HookRefused(499, "not today")

    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=body)
    r = await tus.create(5, {"filename": "a.txt"})
    assert r.code == 499 and json.loads(r.body)["message"] == "not today"


async def test_a_destination_a_hook_chose_is_checked_as_any(tus, tus_app, staging):
    def body(info, context):
        info.metadata["path"] = "../outside"

    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=body)
    before = listing(staging)
    r = await tus.create(5, {"filename": "a.txt"})
    assert r.code == 403, r.body
    assert listing(staging) == before


@pytest.mark.parametrize("kind", KINDS)
async def test_a_pre_create_that_fails_answers_500_and_creates_nothing(kind, tus, tus_app, staging):
    def body(info, context):
        raise RuntimeError("/secret/path/of/the/admin broke")

    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=make(kind, body))
    before, failed = listing(staging), failures("pre_create")
    r = await tus.create(5, {"filename": "a.txt"})
    assert r.code == 500
    message = json.loads(r.body)["message"]
    assert message == "the server's pre_create hook failed; its log says why"
    assert b"secret" not in r.body and b"Traceback" not in r.body
    assert listing(staging) == before
    assert failures("pre_create") == failed + 1


async def test_metadata_that_is_no_dict_of_strings_is_a_failure(tus, tus_app, staging):
    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=lambda i, c: {"path": 3})
    before = listing(staging)
    r = await tus.create(5, {"filename": "a.txt"})
    assert r.code == 500 and b"not a dict of strings" in r.body
    assert listing(staging) == before


async def test_pre_create_sees_partials_and_the_total_of_a_final(tus, tus_app, jp_base_url):
    hook = make("sync", lambda info, context: None)
    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_create=hook)
    a = await tus.create_id(3, headers={"Upload-Concat": "partial"})
    b = await tus.create_id(4, headers={"Upload-Concat": "partial"})
    assert (await tus.patch(a, 0, b"abc")).code == 204
    assert (await tus.patch(b, 0, b"defg")).code == 204
    urls = f"{jp_base_url}api/tus/uploads/{a} {jp_base_url}api/tus/uploads/{b}"
    headers = {"Upload-Concat": f"final;{urls}"}
    r = await tus.request(
        "POST", headers={**headers, "Upload-Metadata": "filename YWIudHh0"}
    )  # ab.txt
    assert r.code == 201, r.body
    infos = [call[1] for call in hook.calls]
    assert [(i.is_partial, i.is_final, i.size) for i in infos] == [
        (True, False, 3),
        (True, False, 4),
        (False, True, 7),
    ]


# ----------------------------------------------------------- post_finish


@pytest.mark.parametrize("kind", KINDS)
async def test_post_finish_runs_once_the_file_landed(kind, tus, tus_app, jp_root_dir):
    seen = []

    def body(info):
        seen.append((info.path, Path(info.path).read_bytes()))

    hook = make(kind, body)
    tus_app.manager.hooks = type(tus_app.manager.hooks)(post_finish=hook)
    uid = await tus.create_id(6, {"filename": "done.txt"})
    assert (await tus.patch(uid, 0, b"abc")).code == 204
    await tus_app.manager.wait_hooks()
    assert seen == []  # not finished yet
    assert (await tus.patch(uid, 3, b"def")).code == 204
    await tus_app.manager.wait_hooks()
    landed = str(Path(jp_root_dir).resolve() / "done.txt")
    assert seen == [(landed, b"abcdef")]
    [(thread, _info)] = hook.calls
    assert (thread is threading.current_thread()) == (kind == "async")
    # Partial uploads are pieces, not files: no call for them.
    p = await tus.create_id(2, headers={"Upload-Concat": "partial"})
    assert (await tus.patch(p, 0, b"xy")).code == 204
    await tus_app.manager.wait_hooks()
    assert len(seen) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_post_finish_never_undoes_the_landing(kind, tus, tus_app, jp_root_dir):
    def body(info):
        raise OSError("the indexer's database is down")

    tus_app.manager.hooks = type(tus_app.manager.hooks)(post_finish=make(kind, body))
    failed = failures("post_finish")
    uid = await tus.create_id(3, {"filename": "kept.txt"})
    r = await tus.patch(uid, 0, b"abc")
    assert r.code == 204
    await tus_app.manager.wait_hooks()
    assert failures("post_finish") == failed + 1
    assert (jp_root_dir / "kept.txt").read_bytes() == b"abc"
    head = await tus.head(uid)
    assert head.code == 200 and head.headers["Upload-Offset"] == "3"


# ----------------------------------------------------------- pre_terminate


@pytest.mark.parametrize("kind", KINDS)
async def test_pre_terminate_may_keep_an_upload(kind, tus, tus_app, jp_fetch):
    keep = {"yes": True}

    def body(info, context):
        if keep["yes"]:
            raise HookRefused(409, f"{info.filename} is kept: {info.offset} bytes in")

    hook = make(kind, body)
    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_terminate=hook)
    uid = await tus.create_id(10, {"filename": "keep.bin"})
    assert (await tus.patch(uid, 0, b"12345")).code == 204
    r = await tus.request("DELETE", uid)
    assert r.code == 409 and json.loads(r.body)["message"] == "keep.bin is kept: 5 bytes in"
    assert (await tus.head(uid)).headers["Upload-Offset"] == "5"
    keep["yes"] = False
    assert (await tus.request("DELETE", uid)).code == 204
    assert (await tus.head(uid)).code == 404
    [(_, info, context), _second] = hook.calls
    assert info.id == uid and context.method == "DELETE"
    assert context.username == await me(jp_fetch)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_pre_terminate_removes_nothing(kind, tus, tus_app):
    def body(info, context):
        raise KeyError("oops")

    tus_app.manager.hooks = type(tus_app.manager.hooks)(pre_terminate=make(kind, body))
    uid = await tus.create_id(10)
    assert (await tus.request("DELETE", uid)).code == 500
    assert (await tus.head(uid)).code == 200


# ----------------------------------------------------------- configuration

SEEN_BY_IMPORT: list[str] = []


def finished_by_import_string(info) -> None:
    SEEN_BY_IMPORT.append(info.filename)


@pytest.mark.parametrize(
    "tus_config", [{"post_finish": "tests.test_hooks.finished_by_import_string"}]
)
async def test_a_hook_given_as_an_import_string(tus, tus_app, tus_config):
    assert tus_app.post_finish is finished_by_import_string
    uid = await tus.create_id(2, {"filename": "imp.txt"})
    assert (await tus.patch(uid, 0, b"ok")).code == 204
    await tus_app.manager.wait_hooks()
    assert SEEN_BY_IMPORT[-1] == "imp.txt"


def test_a_hook_that_is_not_callable_is_refused_at_start():
    with pytest.raises(TraitError, match="must be callable"):
        TusApp(pre_create=42)
    with pytest.raises(TraitError, match="cannot import"):
        TusApp(pre_terminate="no_such_module.hook")


def test_hook_refused_takes_error_statuses_only():
    with pytest.raises(ValueError):
        HookRefused(200, "fine")
    assert HookRefused().status == 403


# ----------------------------------------------------------- the documented examples


def documented_example(name: str) -> Config:
    """Run the ``# example: <name>`` block of docs/operations.md as a config file."""
    blocks = re.findall(r"```python\n# example: (\w+)\n(.*?)```", OPERATIONS.read_text(), re.S)
    code = dict(blocks)[name]
    c = Config()
    namespace = {"c": c, "__name__": f"example_{name}"}
    exec(compile(code, f"docs/operations.md ({name})", "exec"), namespace)
    c.TusApp.namespace = namespace
    return c


QUOTA = documented_example("per_user_quota")
ALLOW = documented_example("allow_list")
INDEXER = documented_example("index_notebook")


@pytest.mark.parametrize("tus_config", [{"pre_create": QUOTA.TusApp.pre_create}])
async def test_the_per_user_quota_example(tus, tus_config, jp_fetch, jp_root_dir, monkeypatch):
    monkeypatch.setitem(QUOTA.TusApp.namespace, "QUOTA_PER_USER", 10)
    user = await me(jp_fetch)
    uid = await tus.create_id(6, {"filename": "a.txt", "path": "data"})
    assert (await tus.patch(uid, 0, b"123456")).code == 204
    assert (jp_root_dir / "users" / user / "data" / "a.txt").read_bytes() == b"123456"
    r = await tus.create(5, {"filename": "b.txt"})
    assert r.code == 507
    assert json.loads(r.body)["message"] == (f"{user} has 6 of 10 bytes in use; 5 more do not fit")
    assert (await tus.create(4, {"filename": "b.txt"})).code == 201


@pytest.mark.parametrize("tus_config", [{"pre_create": ALLOW.TusApp.pre_create}])
async def test_the_allow_list_example(tus, tus_config):
    r = await tus.create(3, {"filename": "run.EXE"})
    assert r.code == 415 and b"only .csv, .ipynb" in r.body
    assert (await tus.create(3, {"filename": "table.CSV"})).code == 201
    assert (await tus.create(3, headers={"Upload-Concat": "partial"})).code == 201


@pytest.mark.parametrize("tus_config", [{"post_finish": INDEXER.TusApp.post_finish}])
async def test_the_notebook_indexer_example(
    tus, tus_app, tus_config, tmp_path, jp_root_dir, monkeypatch
):
    index = tmp_path / "index.jsonl"
    monkeypatch.setitem(INDEXER.TusApp.namespace, "INDEX", str(index))
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Sales in 2026\nnumbers"),
            nbformat.v4.new_code_cell("1"),
        ]
    )
    data = nbformat.writes(nb).encode()
    uid = await tus.create_id(len(data), {"filename": "sales.ipynb"})
    assert (await tus.patch(uid, 0, data)).code == 204
    uid = await tus.create_id(2, {"filename": "notes.txt"})
    assert (await tus.patch(uid, 0, b"no")).code == 204
    await tus_app.manager.wait_hooks()
    [entry] = [json.loads(line) for line in index.read_text().splitlines()]
    assert entry == {
        "path": str(Path(jp_root_dir).resolve() / "sales.ipynb"),
        "title": "Sales in 2026",
        "cells": 2,
        "size": len(data),
    }
