"""Published-comparable benchmark numbers from EleutherAI's lm-evaluation-harness itself.

The offline readers in `benchmarks.py` score tiny models on local copies of four benchmarks; a
number meant to sit beside a paper's should come from the harness the papers used, with its own
prompts, few-shot sampling and metrics. `run` hands the model alignlab already loaded (safetensors
only, on the stage's device and dtype) to the harness's HF wrapper, so nothing is loaded twice and
no remote code runs. Task names are the harness's (`hellaswag`, `mmlu`, `arc_easy`, ...), or tasks
of your own from YAML files in `include` (a local data file works offline). The harness is an
optional extra: `pip install 'alignlab[harness]'`.
"""
from __future__ import annotations

import logging

from ..errors import InputError


def run(model, tokenizer, tasks: list[str], include: str | None = None, limit: int | None = None,
        num_fewshot: int | None = None, batch_size: int = 16, seed: int = 0) -> dict:
    """{"harness_<task>_<metric>": value, ...} plus which harness version produced them."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise InputError("harness_tasks: lm-evaluation-harness is not installed "
                         "(pip install 'alignlab[harness]')") from None
    from importlib.metadata import version

    manager = TaskManager(include_path=include)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise InputError(f"harness_tasks: {unknown[0]!r} is not a task the harness knows"
                         + (f" (nor one in {include})" if include else "; add your own with harness_include: DIR"))
    for name in ("lm-eval", "lm_eval"):  # its INFO lines would fill a quiet console
        logging.getLogger(name).setLevel(logging.WARNING)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=manager, random_seed=seed, numpy_random_seed=seed,
                                      torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=0,
                                      verbosity="WARNING")["results"]
    metrics: dict = {"harness": f"lm-evaluation-harness {version('lm_eval')}"}
    for task, values in results.items():
        for key, value in values.items():
            metric, _, _filter = key.partition(",")  # "acc,none" -> acc
            if metric != "alias" and isinstance(value, (int, float)) and "stderr" not in metric:
                metrics[f"harness_{task}_{metric}"] = value
    return metrics
