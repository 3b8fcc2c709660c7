"""An auth manager for the e2e tests: Airflow's simple auth manager, where user ``outsider`` may read no DAG.

The simple auth manager lets every role read every DAG, so a 403 from a DAG-scoped route needs an
auth manager that says no. This one is configured as ``[core] auth_manager`` of the deployment; the
routes under test call it through Airflow's own ``requires_access_dag``.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DENIED_USER = "outsider"


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == DENIED_USER:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
