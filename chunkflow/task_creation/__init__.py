"""Task creation: where a run works, how it is cut into tasks, and how the tasks reach workers.

The layer between the command line and the work (as igneous's `task_creation`): the CLI parses
options and calls these functions, which a Python user can call the same way.

- `region`: start/stop/size, a bbox or a volume's bounds at a mip → one `BoundingBox`; the
  region of a task grid (generate-tasks) and of an inference run (setup-env).
- `dispatch`: a task grid sent to a queue or a task file, or streamed down the chain.
- `leasing`: tasks leased from a queue (fetch-task) or taken from a task file (Slurm arrays).

Errors name the parameters as `name` (`chunkflow.errors.ParameterError`).
"""
