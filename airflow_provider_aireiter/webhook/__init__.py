"""AIReiter completion callbacks: signed per-task URLs and waking the task that waits."""
