"""Tasks: the 28 DSRL tasks, their data, their environments, local data collection."""

from tasks.registry import (SUITES, TASKS, TaskSpec, UnknownNameError, get_task,  # noqa: F401
                            suite_tasks)
