"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Kept free of imports beyond the version string: Airflow calls this in every process at start-up.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_aireiter import __version__

#: the connection type, and the connection operators, sensor, hook and trigger use by default
CONN_TYPE = "aireiter"
DEFAULT_CONN_ID = "aireiter_default"
#: seconds after a deferral before the provider resumes the task (``[aireiter] resume_settle_seconds``,
#: see :mod:`airflow_provider_aireiter.triggers.aireiter`)
DEFAULT_SETTLE_SECONDS = 15.0
PACKAGE_NAME = "airflow-provider-aireiter"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its hook, connection form, operators, sensor, trigger and plugin."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "AIReiter",
        "description": "Generate images and videos with AIReiter (https://aireiter.com) from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "AIReiter",
                "external-doc-url": "https://docs.aireiter.com/en/overview",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "AIReiter",
                "python-modules": ["airflow_provider_aireiter.hooks.aireiter"],
            }
        ],
        "operators": [
            {
                "integration-name": "AIReiter",
                "python-modules": ["airflow_provider_aireiter.operators.aireiter"],
            }
        ],
        "sensors": [
            {
                "integration-name": "AIReiter",
                "python-modules": ["airflow_provider_aireiter.sensors.aireiter"],
            }
        ],
        "triggers": [
            {
                "integration-name": "AIReiter",
                "python-modules": ["airflow_provider_aireiter.triggers.aireiter"],
            }
        ],
        "extra-links": ["airflow_provider_aireiter.operators.aireiter.AireiterOutputLink"],
        "config": {
            "aireiter": {
                "description": "Settings of the AIReiter provider.",
                "options": {
                    "resume_settle_seconds": {
                        "description": "Seconds after a deferral before the provider resumes the task, by its "
                        "trigger or by a completion callback. Airflow's scheduler can fail a task resumed "
                        "sooner (apache/airflow#66374, #72716). Raise it if your scheduler loop lags further; "
                        "0 turns the hold off (for dag.test()).",
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": None,
                        "default": str(DEFAULT_SETTLE_SECONDS),
                    },
                    "media_roots": {
                        "description": "Comma-separated storage URIs (file:///data/media, s3://bucket/media) "
                        "under which the media view, in the API server, may serve the outputs the operators "
                        "stored. Nothing stored is served unless it lies under one of them: set them to the "
                        "output_path roots of your DAGs. Outputs elsewhere are listed with their path and a "
                        "link to the service's URL, but not served.",
                        "version_added": "0.3.0",
                        "type": "string",
                        "example": "file:///data/aireiter-media,s3://my-bucket/aireiter",
                        "default": "",
                    },
                },
            }
        },
        # The callback plugin is registered through the ``airflow.plugins`` entry point only: listing it
        # here as well would load it twice ("already registered", a plugin import error in the UI).
        "connection-types": [
            {
                "connection-type": "aireiter",
                "hook-class-name": "airflow_provider_aireiter.hooks.aireiter.AireiterHook",
                "hook-name": "AIReiter",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://aireiter.com",
                        "password": "your AIReiter API key (Bearer token)",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Seconds to wait for one HTTP answer from AIReiter.",
                        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
                    },
                    "callback_base_url": {
                        "label": "Public callback base URL",
                        "description": "Where AIReiter can reach this Airflow's API server, e.g. "
                        "https://airflow.example.com. When set (with a signing secret), tasks are "
                        "woken by AIReiter's completion callback instead of frequent polling.",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                    "callback_secret": {
                        "label": "Callback signing secret",
                        "description": "Signs the per-task token in callback URLs. Any long random string.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            }
        ],
    }
