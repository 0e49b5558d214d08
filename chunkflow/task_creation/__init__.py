"""Task creation: where a run works, how it is cut into tasks, and how the tasks reach workers.

The layer between the command line and the work (as igneous's `task_creation`): the CLI parses
options and calls these functions, which a Python user can call the same way::

    from chunkflow.task_creation.dispatch import TaskSink
    from chunkflow.task_creation.region import task_grid

    grid = task_grid((64, 512, 512), start=(0, 0, 0), stop=(128, 2048, 2048))
    TaskSink("file:///scratch/queue").send(grid.tasks)  # what generate-tasks -q does

- `region`: start/stop/size, a bbox or a volume's bounds at a mip → one `BoundingBox`; the
  region of a task grid (generate-tasks) and of an inference run (setup-env).
- `dispatch`: a task grid sent to a queue or a task file, or streamed down the chain.
- `leasing`: tasks leased from a queue (fetch-task) or taken from a task file (Slurm arrays).
- `layers`: the output layers an inference run writes (their info files).
- `setup`: an inference run planned (`plan_run`), then its layers created and its tasks sent
  (`set_up`).

The patch grid and memory planning of an inference run is `chunkflow.inference.plan`.
Errors name the parameters as `name` (`chunkflow.errors.ParameterError`); the command line
says its flags instead.
"""
