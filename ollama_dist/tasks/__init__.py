"""tasks: the task-file contract (model, loading with line numbers, inputs) -> Jobs.

The public names a script uses are re-exported here: `from ollama_dist.tasks import Task, load_jobs`.
"""

from ollama_dist.tasks.loader import expand, find_task_files, load_file, load_jobs, load_tasks, render_prompt
from ollama_dist.tasks.model import GitInput, InlineTasks, Inputs, Job, Models, Output, Task, TaskSource

__all__ = ["GitInput", "InlineTasks", "Inputs", "Job", "Models", "Output", "Task", "TaskSource", "expand",
           "find_task_files", "load_file", "load_jobs", "load_tasks", "render_prompt"]
