"""Format adapters: the field's common data shapes turned into TRL's standard formats, once, at the edge.

Every stage reads TRL's formats (`text`; `prompt`/`completion`; `prompt`/`chosen`/`rejected`;
`messages`; KTO's unpaired `prompt`/`completion`/`label`), plain or conversational (lists of
{"role", "content"} messages). The shapes people actually have are converted here, each by a small
function, chosen from the columns of the first row (or named by a stage's `data_format`):

    alpaca        instruction, input, output (+ system, history)          -> prompt/completion
    sharegpt      conversations [{from, value}] (+ system)                -> messages
    sharegpt-dpo  conversations + chosen + rejected ({from, value} each)  -> prompt/chosen/rejected
    hh-rlhf       chosen, rejected: "\\n\\nHuman: ...\\n\\nAssistant: ..."     -> prompt/chosen/rejected
    pku           prompt + response [safer, less safe]                    -> prompt/chosen/rejected
    pku-saferlhf  prompt, response_0, response_1, safer_response_id       -> prompt/chosen/rejected
    kto-messages  messages + label (LLaMA-Factory's KTO)                  -> prompt/completion/label

Conversions keep multi-turn history as messages; each model renders them with its own chat template.
"""
from __future__ import annotations

import re

from .errors import InputError

# TRL's own formats, by their columns: rows in these pass through as they are
STANDARD = {
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired-preference": ("prompt", "completion", "label"),
    "prompt-completion": ("prompt", "completion"),
    "messages": ("messages",),
    "text": ("text",),
}
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
          "model": "assistant", "system": "system"}
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _assistant(text) -> list[dict]:
    return [{"role": "assistant", "content": str(text)}]


def _sharegpt_turns(turns, where: str) -> list[dict]:
    """ShareGPT's [{"from": "human", "value": ...}, ...] as messages."""
    if isinstance(turns, dict):
        turns = [turns]
    messages = []
    for turn in turns:
        role = _ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        if role is None:
            raise InputError(f"{where}: unknown ShareGPT speaker {turn.get('from')!r} "
                             f"(known: {', '.join(sorted(_ROLES))})")
        messages.append({"role": role, "content": str(turn.get("value", turn.get("content", "")))})
    return messages


def hh_turns(transcript: str) -> list[dict]:
    """Anthropic hh-rlhf's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript as messages."""
    parts = _TURN.split(transcript)[1:]
    return [{"role": "user" if who == "Human" else "assistant", "content": text.strip()}
            for who, text in zip(parts[::2], parts[1::2])]


def alpaca(row: dict, where: str) -> dict:
    prompt = [{"role": "system", "content": str(row["system"])}] if row.get("system") else []
    for turn in row.get("history") or []:  # [[instruction, answer], ...] before this one
        prompt += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    request = str(row["instruction"]) + (f"\n{row['input']}" if row.get("input") else "")
    return {"prompt": prompt + [{"role": "user", "content": request}], "completion": _assistant(row["output"])}


def sharegpt(row: dict, where: str) -> dict:
    system = [{"role": "system", "content": str(row["system"])}] if row.get("system") else []
    return {"messages": system + _sharegpt_turns(row["conversations"], where)}


def sharegpt_dpo(row: dict, where: str) -> dict:
    prompt = sharegpt(row, where)["messages"]
    answer = lambda key: [{"role": "assistant", "content": m["content"]}  # noqa: E731
                          for m in _sharegpt_turns(row[key], where)[-1:]]
    return {"prompt": prompt, "chosen": answer("chosen"), "rejected": answer("rejected")}


def hh_rlhf(row: dict, where: str) -> dict:
    chosen, rejected = hh_turns(str(row["chosen"])), hh_turns(str(row["rejected"]))
    if not chosen or chosen[-1]["role"] != "assistant" or not rejected or rejected[-1]["role"] != "assistant":
        raise InputError(f"{where}: an hh-rlhf transcript must end with an Assistant turn")
    # the two transcripts share every turn but the last answer; that shared history is the prompt
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def pku(row: dict, where: str) -> dict:
    responses = row["response"]
    if not isinstance(responses, list) or len(responses) != 2:
        raise InputError(f"{where}: 'response' must be a list of two answers, the safer first")
    return {"prompt": [{"role": "user", "content": str(row["prompt"])}],
            "chosen": _assistant(responses[0]), "rejected": _assistant(responses[1])}


def pku_saferlhf(row: dict, where: str) -> dict:
    safer = int(row["safer_response_id"])
    if safer not in (0, 1):
        raise InputError(f"{where}: safer_response_id must be 0 or 1, got {safer}")
    return {"prompt": [{"role": "user", "content": str(row["prompt"])}],
            "chosen": _assistant(row[f"response_{safer}"]), "rejected": _assistant(row[f"response_{1 - safer}"])}


def kto_messages(row: dict, where: str) -> dict:
    messages = row["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise InputError(f"{where}: a KTO conversation must end with the assistant's answer")
    label = row["label"]
    label = label if isinstance(label, bool) else str(label).strip().lower() in ("true", "1", "yes")
    return {"prompt": messages[:-1], "completion": messages[-1:], "label": label}


# name -> (columns that identify it, converter, the TRL format it produces); checked in this order
ADAPTERS = {
    "sharegpt-dpo": (("conversations", "chosen", "rejected"), sharegpt_dpo, "preference"),
    "hh-rlhf": (("chosen", "rejected"), hh_rlhf, "preference"),
    "pku-saferlhf": (("prompt", "response_0", "response_1", "safer_response_id"), pku_saferlhf, "preference"),
    "pku": (("prompt", "response"), pku, "preference"),
    "kto-messages": (("messages", "label"), kto_messages, "unpaired-preference"),
    "alpaca": (("instruction", "output"), alpaca, "prompt-completion"),
    "sharegpt": (("conversations",), sharegpt, "messages"),
}
KNOWN = [*STANDARD, *ADAPTERS]


def detect(row: dict) -> str:
    """The format of a row, by its columns: one of TRL's own first, then the adapters'."""
    keys = set(row)
    for name, columns in STANDARD.items():
        # a label makes prompt/completion KTO's unpaired format, and messages LLaMA-Factory's KTO shape
        if set(columns) <= keys and not (name in ("prompt-completion", "messages") and "label" in keys):
            return name
    for name, (columns, _, _) in ADAPTERS.items():
        if set(columns) <= keys:
            return name
    raise InputError(f"columns {sorted(keys)} match no known format; known: {', '.join(KNOWN)} "
                     "(set data_format to name one)")


def to_standard(rows: list[tuple[int, dict]], source: str, data_format: str | None = None) -> tuple[list[dict], str]:
    """(rows in a TRL format, that format's name) from numbered rows in any known shape."""
    if not rows:
        raise InputError(f"{source}: no rows (the data set is empty)")
    name = data_format or detect_or_say_where(rows[0][1], source)
    if name in STANDARD:
        return [row for _, row in rows], name
    if name not in ADAPTERS:
        raise InputError(f"data_format: unknown format {name!r}; known: {', '.join(KNOWN)}")
    columns, convert, produces = ADAPTERS[name]
    out = []
    for number, row in rows:
        where = f"{source}:{number}" if number else f"{source} (record {len(out) + 1})"
        missing = [c for c in columns if c not in row]
        if missing:
            raise InputError(f"{where}: missing column {missing[0]!r} (format {name})")
        out.append(convert(row, where))
    return out, produces


def detect_or_say_where(row: dict, source: str) -> str:
    try:
        return detect(row)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
