"""Review before publish: a person approves each generated image, or asks for another one with a note.

Airflow's human-in-the-loop operator pauses the run (deferred, using no worker) and shows the
reviewer a dialog: the candidate image (served by the provider's media view from where it was
stored), its prompt, and a note field. "Regenerate" makes a new image with the note appended to the
prompt; "Approve" publishes it (copies it to the final folder). At most ``MAX_ROUNDS`` images are
made; in the last round the choice is "Approve" or "Reject" (nothing is published).
"""

from __future__ import annotations

# [START howto_review_before_publish]
import os
from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Param, task

from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")
DRAFTS = f"file://{MEDIA_ROOT}/review/drafts/{{{{ run_id | replace(':', '_') }}}}/"
PUBLISHED = f"file://{MEDIA_ROOT}/review/published/"
MAX_ROUNDS = 3


def prompt_of_round(round_no: int) -> str:
    """The prompt template of a round: the run's prompt, then every earlier reviewer's note."""
    notes = "".join(
        f"{{% set note = (ti.xcom_pull(task_ids='review_{earlier}') or {{}}).get('params_input', {{}}).get('note') %}}"
        "{% if note %}. {{ note }}{% endif %}"
        for earlier in range(1, round_no)
    )
    return "{{ params.prompt }}" + notes


def review_body(round_no: int) -> str:
    # A relative URL: the UI resolves it against its own base URL, where the media view is mounted.
    image = (
        "aireiter-media/file?dag_id={{ dag.dag_id }}&run_id={{ run_id | urlencode }}"
        f"&task_id=generate_{round_no}&map_index=-1&n=0&width=640"
    )
    return (
        f"![candidate of round {round_no}]({image})\n\n"
        f"**Prompt:** {{{{ ti.xcom_pull(task_ids='prompt_{round_no}') }}}}\n\n"
        f"Round {round_no} of {MAX_ROUNDS}. Approve to publish it"
        + (", or write a note and choose Regenerate." if round_no < MAX_ROUNDS else ", or Reject it.")
    )


with DAG(
    dag_id="example_review_before_publish",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompt": Param("A poster of a lighthouse at dawn, bold flat colours", type="string")},
    tags=["aireiter", "example", "human-in-the-loop"],
) as dag:

    @task.branch
    def route(round_no: int, answer: dict[str, Any]) -> str | None:
        """Approve: publish; Regenerate: the next round; Reject: stop (everything after is skipped)."""
        chosen = answer["chosen_options"][0]
        if chosen == "Approve":
            return "publish"
        return f"prompt_{round_no + 1}" if chosen == "Regenerate" else None

    @task
    def prompt(text: str) -> str:
        """The round's rendered prompt (shown to the reviewer, and sent to AIReiter)."""
        return text

    upstream: Any = None
    routes = []
    for round_no in range(1, MAX_ROUNDS + 1):
        text = prompt.override(task_id=f"prompt_{round_no}")(prompt_of_round(round_no))
        generated = SeedreamV5LiteOperator(
            task_id=f"generate_{round_no}",
            prompt=f"{{{{ ti.xcom_pull(task_ids='prompt_{round_no}') }}}}",
            aspect_ratio="4:3",
            output_path=DRAFTS,
        )
        last = round_no == MAX_ROUNDS
        review = HITLOperator(
            task_id=f"review_{round_no}",
            subject=f"Publish this image? (round {round_no} of {MAX_ROUNDS})",
            body=review_body(round_no),
            options=["Approve", "Reject"] if last else ["Approve", "Regenerate"],
            params={"note": Param("", type=["string", "null"], description="What to change (for Regenerate)")},
            # No response timeout: it waits for the reviewer (``response_timeout`` is new in the standard
            # provider that comes with Airflow 3.3; older ones take the wait from ``execution_timeout``).
        )
        decided = route.override(task_id=f"route_{round_no}")(round_no, review.output)  # type: ignore[arg-type]
        if upstream is not None:
            upstream >> text
        text >> generated >> review
        routes.append(decided)
        upstream = decided

    @task(trigger_rule="none_failed_min_one_success")
    def publish(**context: Any) -> dict[str, Any]:
        """Copy the approved image to the final folder."""
        from airflow.sdk import ObjectStoragePath

        ti = context["ti"]
        for round_no in range(1, MAX_ROUNDS + 1):
            answer = ti.xcom_pull(task_ids=f"review_{round_no}")
            if answer and answer["chosen_options"] == ["Approve"]:
                result = ti.xcom_pull(task_ids=f"generate_{round_no}")
                source = ObjectStoragePath(result["outputs"][0]["path"])
                target = ObjectStoragePath(PUBLISHED) / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                source.copy(target)
                return {
                    "published": str(target),
                    "round": round_no,
                    "prompt": ti.xcom_pull(task_ids=f"prompt_{round_no}"),
                }
        raise RuntimeError("publish ran without an approved round")

    routes >> publish()
# [END howto_review_before_publish]
