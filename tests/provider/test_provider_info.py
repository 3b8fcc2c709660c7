"""Provider metadata, the connection type and both env-var connection forms."""

from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path
from urllib.parse import quote

import airflow
import jsonschema
import pytest

from airflow_provider_aireiter.get_provider_info import get_provider_info
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from tests.conftest import conn_json
from tests.scripted_server import Answer, ScriptedServer


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == distribution("airflow-provider-aireiter").metadata["Name"]


def test_connection_form_is_declarative() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = conn_type["ui-field-behaviour"]
    assert conn_type["connection-type"] == "aireiter"
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"]["password"] == "API key"
    assert behaviour["placeholders"]["host"] == "https://aireiter.com"
    fields = conn_type["conn-fields"]
    assert fields["callback_secret"]["schema"]["format"] == "password"
    assert {"timeout", "callback_base_url", "callback_secret"} <= set(fields)
    # The deprecated widget methods are not defined on the hook.
    assert "get_connection_form_widgets" not in AireiterHook.__dict__
    assert "get_ui_field_behaviour" not in AireiterHook.__dict__


def test_entry_points_registered() -> None:
    providers = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_aireiter")
    ]
    assert providers and providers[0].load()() == get_provider_info()
    assert any(ep.name == "aireiter_webhook" for ep in entry_points(group="airflow.plugins"))
    # No pytest plugin of its own: a production image's pytest runs never load the emulator.
    assert not [ep for ep in entry_points(group="pytest11") if ep.value.startswith("airflow_provider_aireiter")]


def test_callback_secret_name_is_masked_by_airflow() -> None:
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    assert should_hide_value_for_key("callback_secret")


# The airflow CLI listing the provider is tested on a non-editable install (test_fresh_install.py), and
# the plugin loading once in a real metadata database (tests/webhook/test_callback_wake_db.py).


@pytest.mark.parametrize("form", ["json", "uri"])
def test_env_var_connection_forms(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if form == "json":
        value = conn_json("http://127.0.0.1:8765", "k-123456", timeout=7, callback_base_url="https://af.example/")
    else:
        value = f"aireiter://:k-123456@{quote('http://127.0.0.1:8765', safe='')}?timeout=7&callback_base_url=" + quote(
            "https://af.example/", safe=""
        )
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", value)
    settings = AireiterHook().settings
    assert settings.base_url == "http://127.0.0.1:8765"
    assert settings.api_url == "http://127.0.0.1:8765/api/openapi"
    assert settings.api_key == "k-123456"
    assert settings.timeout == 7
    assert settings.callback_base_url == "https://af.example"
    assert "k-123456" not in repr(settings)


def test_empty_host_defaults_to_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", json.dumps({"conn_type": "aireiter", "password": "k-1"}))
    assert AireiterHook().settings.base_url == "https://aireiter.com"


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", json.dumps({"conn_type": "aireiter", "host": "x.example"}))
    with pytest.raises(ValueError, match="no API key"):
        AireiterHook().settings  # noqa: B018


def test_test_connection_good_key_wrong_key_and_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(server.base_url))
        ok, message = AireiterHook().test_connection()
        assert ok, message
        server.default = Answer(401, {"ok": True, "statusCode": 401, "message": "unauthorized"})
        ok, message = AireiterHook().test_connection()
        assert not ok and "API key" in message
        closed_port = server.httpd.server_address[1]
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(f"http://127.0.0.1:{closed_port}"))
    ok, message = AireiterHook().test_connection()
    assert not ok and "reach" in message


def test_media_and_connection_test_plugins_are_registered_and_light() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    assert names["aireiter_media"].endswith("plugins.media:AireiterMediaPlugin")
    assert names["aireiter_connection_test"].endswith("plugins.connection_test_port:AireiterConnectionTestPlugin")
    # Every Airflow process imports plugins: the media view's FastAPI app and Pillow stay unimported.
    probe = (
        "import sys; import airflow_provider_aireiter.plugins.media, airflow_provider_aireiter.plugins.connection_test_port;"
        "print(sorted(m for m in ('fastapi', 'PIL', 'airflow_provider_aireiter.media_view.app') if m in sys.modules))"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_admin_providers_links_to_the_pypi_page() -> None:
    # Airflow takes the link from the package's "Documentation" URL, not from the provider info.
    urls = distribution("airflow-provider-aireiter").metadata.get_all("Project-URL") or []
    assert "Documentation, https://pypi.org/project/airflow-provider-aireiter/" in urls
    assert "[" not in get_provider_info()["description"]  # plain text, no Markdown


def test_row_test_body_rewrite_only_drops_port_zero_of_aireiter() -> None:
    from airflow_provider_aireiter.plugins.connection_test_port import without_zero_port

    row = {"conn_type": "aireiter", "connection_id": "a", "host": "http://h", "password": "***", "port": 0}
    assert json.loads(without_zero_port(json.dumps(row).encode())) == {k: v for k, v in row.items() if k != "port"}
    for unchanged in ({**row, "port": 8765}, {**row, "conn_type": "http"}, {**row, "port": None}):
        body = json.dumps(unchanged).encode()
        assert without_zero_port(body) is body
    assert without_zero_port(b"not json") == b"not json"


def test_the_media_plugin_app_is_built_on_its_first_request_and_kept() -> None:
    import requests
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from airflow_provider_aireiter.plugins.media import MEDIA_MOUNT, AireiterMediaPlugin
    from airflow_provider_aireiter.plugins.webhook import LazyAsgiApp
    from tests.webhook.helpers import LiveServer

    (entry,) = AireiterMediaPlugin.fastapi_apps
    app = LazyAsgiApp(entry["app"].factory)  # a fresh one: the plugin's own may be built by another test
    assert app._app is None
    with LiveServer(Starlette(routes=[Mount(MEDIA_MOUNT, app=app)])) as server:
        # the media app's own answers: its routes need Airflow's login, unknown paths do not exist
        assert requests.get(f"{server.base_url}{MEDIA_MOUNT}/no-such-page", timeout=30).status_code == 404
        built = app._app
        assert built is not None
        assert requests.get(f"{server.base_url}{MEDIA_MOUNT}/docs", timeout=30).status_code in (401, 403)
        assert app._app is built
