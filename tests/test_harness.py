"""lm-evaluation-harness from `alignlab eval`: the harness itself scores the model alignlab loaded.
Offline, on a task of our own (a YAML over a local JSONL file), so the check needs no download."""
import json

import pytest

from alignlab.config import EvalConfig
from alignlab.errors import InputError
from alignlab.world import World

TASK = """task: world_knowledge
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{candidates}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""


def test_harness_accuracy_matches_alignlabs_own_multiple_choice_scorer(tmp_path, micro_sft):
    """Same items, same model, two implementations of log p(candidate | prompt): the harness's accuracy
    must equal the one alignlab's offline reader computes (a mis-wired model, tokenizer or delimiter
    would move it)."""
    pytest.importorskip("lm_eval", reason="the harness extra is not installed (pip install 'alignlab[harness]')")
    from alignlab.evals import multiple_choice_accuracy
    from alignlab.models import load_model, load_tokenizer
    from alignlab.stages import evaluate

    probes = World(0).knowledge_probes("eval")
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(p) + "\n" for p in probes))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "world_knowledge.yaml").write_text(TASK.format(path=items))
    ours = multiple_choice_accuracy(load_model(str(micro_sft)), load_tokenizer(str(micro_sft)), probes)
    path = evaluate.run(EvalConfig(out=str(tmp_path / "ev"), model=str(micro_sft), n_prompts=4, max_new_tokens=8,
                                   heldout_docs=8, canary_candidates=10, harness_tasks=["world_knowledge"],
                                   harness_include=str(tasks)))
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["harness"].startswith("lm-evaluation-harness 0.4")
    assert metrics["harness_world_knowledge_acc"] == pytest.approx(ours, abs=1 / len(probes) + 1e-9)

    with pytest.raises(InputError, match="harness_tasks: 'no_such_task' is not a task the harness knows"):
        evaluate.run(EvalConfig(out=str(tmp_path / "ev2"), model=str(micro_sft), harness_tasks=["no_such_task"],
                                harness_include=str(tasks), n_prompts=4, max_new_tokens=8))
