"""Parameter validation of the documented models, as business 400 errors."""

from __future__ import annotations

import base64

import pytest

PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def _error(api, model, params):
    response = api.submit("v1", model=model, params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["data"] is None
    assert body["statusCode"] == 400, body
    assert api.emu.submit_count("v1") == 0
    return body["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "cat", "aspect_ratio": "21:9", "resolution": "3K", "web_search": False},
        {"prompt": "cat", "image_url": ["https://example.com/a.jpg", PNG_URI]},
        {"prompt": "cat", "future_param": {"anything": 1}},
        {"prompt": "cat", "image_url": ["http://example.com/x.png"] * 9},
    ],
)
def test_seedream_accepts_valid_params(api, params):
    assert api.submit("ok", model="seedream_v5_lite", params=params).json()["statusCode"] == 200


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"aspect_ratio": "1:1"}, ["params.prompt"]),
        ({"prompt": ""}, ["params.prompt"]),
        ({"prompt": 5}, ["params.prompt"]),
        (
            {"prompt": "p", "aspect_ratio": "5:1"},
            ["params.aspect_ratio", "'5:1'", "1:1, 3:2, 2:3, 4:3, 3:4, 16:9, 9:16, 21:9"],
        ),
        ({"prompt": "p", "resolution": "4K"}, ["params.resolution", "'4K'", "2K, 3K"]),
        ({"prompt": "p", "resolution": "2k"}, ["params.resolution", "'2k'"]),
        ({"prompt": "p", "web_search": 1}, ["params.web_search", "1", "true, false"]),
        ({"prompt": "p", "web_search": "false"}, ["params.web_search", "'false'"]),
        ({"prompt": "p", "image_url": "https://example.com/a.jpg"}, ["params.image_url", "list"]),
        ({"prompt": "p", "image_url": ["https://e.com/a.jpg"] * 10}, ["params.image_url", "10", "at most 9"]),
        ({"prompt": "p", "image_url": ["ftp://e.com/a.jpg"]}, ["params.image_url[0]", "ftp://"]),
        ({"prompt": "p", "image_url": ["data:image/gif;base64,R0lG"]}, ["params.image_url[0]", "jpeg|png|webp"]),
        ({"prompt": "p", "image_url": ["data:image/png;base64,@@@"]}, ["params.image_url[0]", "base64"]),
        ({"prompt": "p", "image_url": [7]}, ["params.image_url[0]"]),
    ],
)
def test_seedream_rejects_bad_params(api, params, needles):
    message = _error(api, "seedream_v5_lite", params)
    for needle in needles:
        assert needle in message


def test_seedream_rejects_data_uri_over_10_mb(api):
    big = "data:image/jpeg;base64," + base64.b64encode(bytes(10 * 1024 * 1024 + 1)).decode()
    message = _error(api, "seedream_v5_lite", {"prompt": "p", "image_url": [big]})
    assert "10 MB" in message and "params.image_url[0]" in message


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "kitten", "video_length": 5, "aspect_ratio": "16:9", "resolution": "720p"},
        {"prompt": "kitten", "aspect_ratio": "9:16", "resolution": "1080p"},
    ],
)
def test_seedance_accepts_valid_params(api, params):
    assert api.submit("ok", model="seedance_1_5_pro", params=params).json()["statusCode"] == 200


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"video_length": 5}, ["params.prompt"]),
        ({"prompt": "p", "video_length": "5"}, ["params.video_length", "'5'", "integer"]),
        ({"prompt": "p", "video_length": True}, ["params.video_length", "true"]),
        ({"prompt": "p", "video_length": 0}, ["params.video_length", ">= 1"]),
        ({"prompt": "p", "video_length": 5.5}, ["params.video_length", "5.5"]),
        ({"prompt": "p", "aspect_ratio": "1:1"}, ["params.aspect_ratio", "'1:1'", "16:9, 9:16"]),
        ({"prompt": "p", "resolution": "4K"}, ["params.resolution", "'4K'", "720p, 1080p"]),
    ],
)
def test_seedance_rejects_bad_params(api, params, needles):
    message = _error(api, "seedance_1_5_pro", params)
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("model", ["veo3_1", "veo3_1_base", "veo3_1_plus", "veo3_1_fast"])
def test_veo_accepts_valid_params(api, model):
    params = {
        "prompt": "Animate this image",
        "image_url": "https://example.com/first.jpg",
        "end_image_url": "https://example.com/last.jpg",
        "aspect_ratio": "9:16",
    }
    assert api.submit("ok", model=model, params=params).json()["statusCode"] == 200


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"image_url": "https://e.com/a.jpg"}, ["params.prompt"]),
        ({"prompt": "p", "image_url": ["https://e.com/a.jpg"]}, ["params.image_url", "single"]),
        ({"prompt": "p", "end_image_url": "not a url"}, ["params.end_image_url", "'not a url'"]),
        ({"prompt": "p", "aspect_ratio": "1:1"}, ["params.aspect_ratio", "16:9, 9:16"]),
    ],
)
def test_veo_rejects_bad_params(api, params, needles):
    message = _error(api, "veo3_1_plus", params)
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("nano_banana_pro_max", {"whatever": [1, 2], "size": "1024x1024"}),
        ("sora2", {}),
        ("kling_v3", {"prompt": 5}),
    ],
)
def test_generic_models_accept_any_params(api, model, params):
    assert api.submit("gen", model=model, params=params).json()["statusCode"] == 200


def test_callback_url_and_metadata_types(api):
    assert "callback_url" in api.submit("cb", callback_url="not-a-url").json()["message"]
    assert "metadata" in api.submit("md", metadata=["x"]).json()["message"]
