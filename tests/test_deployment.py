"""What a deployment serves and to whom, from its settings: no interactive docs unless asked for,
the origins and host names it answers (derived from its URLs unless given), each refused clearly
when malformed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from reflex.utils.precompressed_staticfiles import PrecompressedStaticFiles
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from rxapp.api import without_docs
from rxapp.asset_cache import IMMUTABLE, ImmutableAssets
from settings import SettingsError, load_settings


def test_the_docs_are_off_unless_a_setting_turns_them_on() -> None:
    assert load_settings({}).api_docs is False
    assert load_settings({"API_DOCS": "on"}).api_docs is True
    with pytest.raises(SettingsError, match="API_DOCS must be on or off"):
        load_settings({"API_DOCS": "yes please"})
    app = FastAPI()
    without_docs(app)
    client = TestClient(app)
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200, "the schema stays"


def test_origins_and_hosts_default_to_the_pages_and_the_apis() -> None:
    settings = load_settings({"FRONTEND_PORT": "3001", "API_URL": "https://jobs.example.com/"})
    assert settings.allowed_origins == (
        "http://localhost:3001",
        "http://127.0.0.1:3001",
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "https://jobs.example.com",
    )
    assert settings.allowed_hosts == ("localhost", "127.0.0.1", "jobs.example.com")
    origins = "https://a.example, https://b.example:8443/"
    given = load_settings({"ALLOWED_ORIGINS": origins, "ALLOWED_HOSTS": "*.example"})
    assert given.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert given.allowed_hosts == ("*.example",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLOWED_ORIGINS", "*"),
        ("ALLOWED_ORIGINS", "jobs.example.com"),
        ("ALLOWED_ORIGINS", "https://jobs.example.com/path"),
        ("ALLOWED_ORIGINS", "javascript:alert(1)"),
        ("ALLOWED_HOSTS", "jobs.example.com:8000"),
        ("ALLOWED_HOSTS", "a b"),
    ],
)
def test_a_malformed_origin_or_host_stops_the_settings(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_the_builds_hashed_scripts_are_cached_for_good_and_the_pages_are_asked_for_again(tmp_path: Path) -> None:
    """As `reflex run --env prod` serves the build (Reflex's own static files app at /): a script or
    stylesheet named after its content's hash is immutable; the HTML, any other file, a missing one
    and anything but a read are as Reflex answers them."""
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("root-DM_2gsZ_.js", "__reflex_global_styles-NccINl-w.css", "plain.js"):
        (assets / name).write_text("/* built */")
    (tmp_path / "index.html").write_text("<html></html>")
    site = Starlette(routes=[Mount("/", app=PrecompressedStaticFiles(directory=tmp_path, html=True))])
    client = TestClient(ImmutableAssets(site))
    for path in ("/assets/root-DM_2gsZ_.js", "/assets/__reflex_global_styles-NccINl-w.css"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["cache-control"]) == (200, IMMUTABLE), path
        again = client.get(path, headers={"if-none-match": answer.headers["etag"]})
        assert (again.status_code, again.headers["cache-control"]) == (304, IMMUTABLE), path
    for path in ("/", "/index.html", "/assets/plain.js", "/assets/gone-ABCDEFGH.js", "/assets/../index.html"):
        answer = client.get(path)
        assert "cache-control" not in answer.headers, path
    assert "cache-control" not in client.post("/assets/root-DM_2gsZ_.js").headers
