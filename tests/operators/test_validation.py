"""Bad input fails before any HTTP request, naming the field, the bad value and the allowed values."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from airflow_provider_aireiter.api_types import MAX_LENGTH, attempt_id, check_out_task_id, default_out_task_id
from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError
from airflow_provider_aireiter.operators.aireiter import (
    AireiterGenerateOperator,
    Seedance15ProOperator,
    SeedreamV5LiteOperator,
    Veo31Operator,
)

BIG_DATA_URI = "data:image/png;base64," + base64.b64encode(b"\0" * (10 * 1024 * 1024 + 10)).decode()
SMALL_DATA_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG tiny").decode()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", aspect_ratio="5:1"),
            ["aspect_ratio", "'5:1'", "16:9"],
        ),
        (lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", resolution="4K"), ["resolution", "'4K'", "2K", "3K"]),
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", web_search="yes"),  # type: ignore[arg-type]
            ["web_search", "'yes'", "true or false"],
        ),
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", image_urls=["https://x/a.png"] * 10),
            ["image_url", "10", "at most 9"],
        ),
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", image_urls=["ftp://x/a.png"]),
            ["image_url", "ftp://x/a.png", "http"],
        ),
        (lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", image_urls=[BIG_DATA_URI]), ["image_url", "10 MB"]),
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", image_urls=["data:text/plain;base64,QQ=="]),
            ["image_url", "jpeg, png or webp"],
        ),
        (
            lambda: Seedance15ProOperator(task_id="t", prompt="p", video_length="five"),  # type: ignore[arg-type]
            ["video_length", "'five'", "integer"],
        ),
        (lambda: Seedance15ProOperator(task_id="t", prompt="p", video_length=0), ["video_length", "at least 1"]),
        (
            lambda: Seedance15ProOperator(task_id="t", prompt="p", resolution="4K"),
            ["resolution", "'4K'", "720p", "1080p"],
        ),
        (lambda: Seedance15ProOperator(task_id="t", prompt="p", aspect_ratio="1:1"), ["aspect_ratio", "'1:1'", "9:16"]),
        (
            lambda: Veo31Operator(task_id="t", prompt="p", channel="max"),
            ["channel", "'max'", "default", "base", "plus"],
        ),
        (
            lambda: Veo31Operator(task_id="t", prompt="p", image_url=["https://x/a.png"]),  # type: ignore[arg-type]
            ["image_url", "list", "a string"],
        ),
        (lambda: Veo31Operator(task_id="t", prompt="p", end_image_url="file:///etc/passwd"), ["end_image_url", "http"]),
        (lambda: Veo31Operator(task_id="t", prompt="p", aspect_ratio="4:3"), ["aspect_ratio", "'4:3'", "16:9"]),
        (
            lambda: AireiterGenerateOperator(task_id="t", model="seedream_v5_lite", model_params={"prompt": 3}),
            ["model_params.prompt", "int", "string"],
        ),
        (lambda: AireiterGenerateOperator(task_id="t", model="bad model!", model_params={}), ["model", "'bad model!'"]),
        (lambda: AireiterGenerateOperator(task_id="t", model="x", model_params=["a"]), ["model_params", "dict"]),  # type: ignore[arg-type]
        (
            lambda: AireiterGenerateOperator(task_id="t", model="x", out_task_id="has space"),
            ["out_task_id", "'has space'", "64"],
        ),
        (
            lambda: SeedreamV5LiteOperator(task_id="t", prompt="p", resolution="2K", extra_params={"resolution": "3K"}),
            ["extra_params", "resolution"],
        ),
    ],
)
def test_bad_input_is_named_at_parse_time(make: Any, expected: list[str]) -> None:
    with pytest.raises(AireiterInvalidRequestError) as caught:
        make()
    message = str(caught.value)
    for piece in expected:
        assert piece in message, f"{piece!r} missing from: {message}"


def test_only_what_the_caller_set_is_sent() -> None:
    op = SeedreamV5LiteOperator(task_id="t", prompt="p", web_search=False, extra_params={"seed": 7})
    assert op.build_params() == {"prompt": "p", "web_search": False, "seed": 7}
    assert Veo31Operator(task_id="v", prompt="p", channel="base").model == "veo3_1_base"
    assert Veo31Operator(task_id="v", prompt="p").model == "veo3_1"


def test_good_values_pass_and_other_models_pass_through() -> None:
    SeedreamV5LiteOperator(task_id="a", prompt="p", image_urls=["https://x/a.png", SMALL_DATA_URI], resolution="3K")
    op = AireiterGenerateOperator(task_id="b", model="nano_banana_pro_max", model_params={"anything": [1, 2]})
    assert op.build_params() == {"anything": [1, 2]}


def test_templated_values_are_checked_after_rendering_not_before() -> None:
    op = SeedreamV5LiteOperator(task_id="t", prompt="{{ ds }}", extra_params={"aspect_ratio": "{{ params.ar }}"})
    op.extra_params = {"aspect_ratio": "5:1"}  # what rendering produced
    with pytest.raises(AireiterInvalidRequestError, match="aspect_ratio"):
        op.check_values(op._values(), at_parse_time=False)


def test_template_fields_cover_what_users_template() -> None:
    fields = set(SeedreamV5LiteOperator.template_fields)
    assert {"prompt", "image_urls", "model_params", "metadata", "out_task_id", "output_path", "extra_params"} <= fields
    assert {"image_url", "end_image_url"} <= set(Veo31Operator.template_fields)
    assert AireiterGenerateOperator.template_fields_renderers["model_params"] == "json"


def test_default_out_task_id_is_stable_unique_and_valid() -> None:
    a = default_out_task_id("my_dag" * 20, "generate.image", "manual__2026-01-01T00:00:00+00:00", -1)
    assert a == default_out_task_id("my_dag" * 20, "generate.image", "manual__2026-01-01T00:00:00+00:00", -1)
    assert a != default_out_task_id("my_dag" * 20, "generate.image", "manual__2026-01-01T00:00:00+00:00", 0)
    assert a != default_out_task_id("my_dag" * 20, "generate.image", "scheduled__2026-01-02T00:00:00+00:00", -1)
    for candidate in (a, attempt_id(a, 12), attempt_id("x" * 64, 3)):
        assert check_out_task_id(candidate) == candidate and len(candidate) <= MAX_LENGTH


def test_partial_arguments_are_validated_at_parse_time_like_unmapped_ones() -> None:
    from datetime import datetime

    from airflow.sdk import DAG

    with DAG("mapped_validation", schedule=None, start_date=datetime(2026, 1, 1)):
        with pytest.raises(AireiterInvalidRequestError, match=r"params.aspect_ratio='5:1' is not allowed"):
            SeedreamV5LiteOperator.partial(task_id="bad", aspect_ratio="5:1").expand(prompt=["a", "b"])
        with pytest.raises(AireiterInvalidRequestError, match="channel='max'"):
            Veo31Operator.partial(task_id="bad_channel", channel="max").expand(prompt=["a"])
        # What comes from .expand() (the prompt here) is checked when each mapped task runs.
        SeedreamV5LiteOperator.partial(task_id="good", aspect_ratio="16:9").expand(prompt=["a", "b"])
        AireiterGenerateOperator.partial(task_id="generic", model="seedream_v5_lite").expand(
            model_params=[{"prompt": "a"}]
        )
        with pytest.raises(AireiterInvalidRequestError, match=r"model_params\.prompt"):
            AireiterGenerateOperator.partial(
                task_id="generic_bad", model="seedream_v5_lite", model_params={"prompt": 3}
            ).expand(out_task_id=["x"])


def test_a_reattach_counts_as_changed_only_what_certainly_differs() -> None:
    """A false "changed" would pay again on every retry: spelling differences of the echo do not count."""
    from airflow_provider_aireiter.hooks.transport import TaskInfo
    from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator, Veo31Operator

    def changes(op: object, params: dict[str, Any], echoed: dict[str, Any] | None) -> list[str] | None:
        info = TaskInfo(status="completed", request=echoed)
        return op._request_changes(info, params)  # type: ignore[attr-defined]

    image = SeedreamV5LiteOperator(task_id="i", prompt="a fox")
    sent = {"prompt": "a fox", "image_url": ("u1", "u2"), "web_search": True, "seed": None}
    assert changes(image, sent, None) is None  # nothing echoed: nothing to compare
    same = {
        "model": "seedream_v5_lite",
        "params": {"prompt": "a fox ", "image_url": ["u1", "u2"], "web_search": "true"},
    }
    assert changes(image, sent, same) == []
    data_uri = {"prompt": "a fox", "image_url": ["data:image/png;base64,AAAA"]}
    cdn = {"model": "seedream_v5_lite", "params": {"prompt": "a fox", "image_url": ["https://cdn/x.png"]}}
    assert changes(image, data_uri, cdn) == []
    other = {"model": "seedream_v5_lite", "params": {"prompt": "a red kite", "image_url": ["u1"]}}
    assert changes(image, sent, other) == ["params.image_url", "params.prompt"]
    assert changes(image, {"prompt": "A Fox"}, {"model": "seedream_v5_lite", "params": {"prompt": "a fox"}}) == [
        "params.prompt"
    ]
    assert changes(image, {"prompt": "a fox"}, {"model": "nano_banana_pro", "params": {"prompt": "a fox"}}) == [
        "model ('nano_banana_pro' -> 'seedream_v5_lite')"
    ]
    veo = Veo31Operator(task_id="v", prompt="p", image_url="https://x/a.png", channel="plus")
    assert changes(veo, {"prompt": "p"}, {"model": "veo3_1", "params": {"prompt": "p"}}) == []
