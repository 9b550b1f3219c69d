"""The one place that turns a prompt into what a model reads, and says where its answer ends.

A prompt is either plain text (a base model continues it as it is) or a conversation in TRL's
conversational form, a list of {"role", "content"} messages. A conversation is rendered with the
model's own chat template (`apply_chat_template(add_generation_prompt=True)`): Qwen gets
`<|im_start|>user ...`, Llama-3 its headers, the world's tokenizer `User: ...\\nAssistant:`. A
tokenizer without a template gets the plain `User:`/`Assistant:` transcript.

Stages never build prompt strings themselves: they pass prompts through `render` (what the policy
reads), `encode` (its token ids, with the BOS its tokenizer adds) and `stop_ids` (every id that ends
a turn: Llama-3's `<|eot_id|>`, Qwen's `<|im_end|>`, Gemma's `<end_of_turn>` as well as EOS).
Scorers get the prompt itself and render it in their own format (`render_exchange`).
"""
from __future__ import annotations

import functools

def user(request: str) -> list[dict]:
    """A one-turn conversation."""
    return [{"role": "user", "content": request}]


def is_conversation(prompt) -> bool:
    return isinstance(prompt, list)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def transcript(messages: list[dict], generation_prompt: bool = True) -> str:
    """The plain `User:`/`Assistant:` transcript, for tokenizers without a chat template (the world's
    corpus writes dialogues this way, so a base model pretrained on it knows the format)."""
    names = {"user": "User:", "assistant": "Assistant:"}
    lines = [f"{names[m['role']]} {m['content']}" if m["role"] in names else m["content"] for m in messages]
    return "\n".join(lines) + ("\nAssistant:" if generation_prompt else "")


def render(tokenizer, prompt) -> str:
    """The text a model reads for `prompt`: plain text as it is, a conversation through the
    tokenizer's chat template (ending with the generation prompt) or the plain transcript.

    A BOS the template writes is left out when the tokenizer adds one itself: `encode` and TRL's
    trainers put it back, once (otherwise training would read BOS twice)."""
    if not is_conversation(prompt):
        return str(prompt)
    if not has_chat_template(tokenizer):
        return transcript(prompt)
    return _without_bos(tokenizer, tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))


def _without_bos(tokenizer, text: str) -> str:
    """A rendered text without the BOS its template wrote, when the tokenizer adds BOS itself."""
    bos = tokenizer.bos_token
    return text[len(bos):] if bos and text.startswith(bos) and adds_bos(tokenizer) else text


def render_exchange(tokenizer, prompt, completion) -> str:
    """Prompt and answer as one text in the tokenizer's own chat format, without the end-of-turn
    token (reward models and classifiers append EOS themselves): what a reward model reads. An answer
    given as messages (a data file's conversational pair) is rendered by the template with its prompt,
    as TRL renders it in training."""
    if is_conversation(completion):
        if is_conversation(prompt) and has_chat_template(tokenizer):
            text = _without_bos(tokenizer, tokenizer.apply_chat_template(prompt + completion, tokenize=False))
            return text.rstrip().removesuffix(tokenizer.eos_token or "\0")
        completion = " " + completion[-1]["content"]
    completion = completion.removesuffix(tokenizer.eos_token or "\0")
    if not is_conversation(prompt):
        return str(prompt) + completion
    rendered = render(tokenizer, prompt)
    # the answer is appended to the rendered prompt rather than rendered as an assistant message:
    # templates differ in what they strip and add around it, and the policy sampled it right here
    return rendered + completion


def plain_pair(tokenizer, prompt, completion) -> tuple[str, str]:
    """A prompt and its answer as the plain texts this model reads: the prompt rendered (chat template,
    generation prompt), the answer as the template writes it after that prompt (end-of-turn included),
    so that training on the pair as text is training on what the template would have produced."""
    rendered = render(tokenizer, prompt)
    if not is_conversation(completion):
        return rendered, str(completion)
    if is_conversation(prompt) and has_chat_template(tokenizer):
        whole = _without_bos(tokenizer, tokenizer.apply_chat_template(prompt + completion, tokenize=False))
        if whole.startswith(rendered):  # templates that rewrite earlier turns (e.g. drop thinking) do not
            return rendered, whole[len(rendered):]
    return rendered, " " + completion[-1]["content"]


def as_text(tokenizer, row: dict) -> dict:
    """A conversational TRL row (prompt, completion / chosen / rejected) as plain text, for a tokenizer
    without a chat template, which TRL's trainers cannot render: the prompt as a transcript, each answer
    after a space, as the transcript's turns are written. Rows with a template pass as they are."""
    if has_chat_template(tokenizer):
        return row
    if is_conversation(row.get("messages")):  # a whole conversation: its last answer is the completion
        messages = row["messages"]
        return {"prompt": transcript(messages[:-1]), "completion": " " + messages[-1]["content"]}
    if not is_conversation(row.get("prompt")):
        return row
    text = {k: " " + v[-1]["content"] if is_conversation(v) else v for k, v in row.items()}
    return {**text, "prompt": transcript(row["prompt"])}


def request(prompt) -> str:
    """The last user message of a conversation (the whole text of a plain prompt): what a judge of
    the request (is it harmful? which review was asked for?) reads."""
    if is_conversation(prompt):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt)


@functools.lru_cache(maxsize=64)  # asked for every rendered prompt; a tokenizer's answer does not change
def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS token before a text when asked for special tokens (Llama,
    Gemma and Mistral do; GPT-2, Qwen and the world's tokenizer do not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts, with BOS first when the tokenizer adds one and the text (a chat
    template may write it) does not already start with it. One batched call."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if adds_bos(tokenizer):
        bos = tokenizer.bos_token_id
        ids = [row if row[:1] == [bos] else [bos] + row for row in ids]
    return ids


def stop_ids(model, tokenizer) -> list[int]:
    """Every token id that ends the model's turn: the tokenizer's EOS plus each id of the model's
    generation_config.eos_token_id (an int or a list), in that order, without repeats."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, (list, tuple)) else [configured]
    return list(dict.fromkeys(i for i in ids if i is not None))
