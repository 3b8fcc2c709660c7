"""Apache Airflow provider for AIReiter, the asynchronous image and video generation API."""

from __future__ import annotations

__version__ = "0.5.0"
__all__ = ["__version__"]
