"""The language-modeling study: which model family learns which rule, by numbers.

It trains models (``scratchllm.training``) and measures them
(``scratchllm.evaluation``), so it sits above both.

- ``budgets``: ``Budget`` and ``BUDGETS`` (tiny, small, medium): steps, batch, model size.
- ``specs``: model specs (``bigram``, ``gpt:n_layer=1``), sized by a budget
  (``build_model``), and the directory names of specs.
- ``run``: ``run_study(StudyConfig(...))``: plan, train in parallel, resume, measure.
- ``report``: ``report.md`` with the automatic reading; ``chart``: the grid of valid %
  per model and language; ``outputs``: ``write_outputs`` writes both and ``results.json``.

>>> result = run_study(StudyConfig(["sticky:k=2"], ["bigram", "gpt"]))  # doctest: +SKIP
"""

from scratchllm.study.budgets import BUDGETS, Budget, get_budget
from scratchllm.study.outputs import write_outputs
from scratchllm.study.run import (
    RunTask,
    StudyConfig,
    StudyResult,
    finished_row,
    plan_study,
    prepare_language_data,
    run_one,
    run_study,
)
from scratchllm.study.specs import (
    ModelSpec,
    build_model,
    dir_name,
    fit_width,
    parse_model_spec,
    spec_from_dir_name,
)

__all__ = [
    "BUDGETS",
    "Budget",
    "ModelSpec",
    "RunTask",
    "StudyConfig",
    "StudyResult",
    "build_model",
    "dir_name",
    "finished_row",
    "fit_width",
    "get_budget",
    "parse_model_spec",
    "plan_study",
    "prepare_language_data",
    "run_one",
    "run_study",
    "spec_from_dir_name",
    "write_outputs",
]
