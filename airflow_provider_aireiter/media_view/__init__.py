"""The media view: AIReiter outputs of a task instance or a DAG run, shown inside Airflow's UI."""
