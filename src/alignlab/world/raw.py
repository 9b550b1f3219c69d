"""A raw internet with planted truth: the world's pages plus the mess a crawl brings, every document
labelled with what it is, so a data pipeline's filters and dedup can be scored (precision, recall).

Labels: `clean` (a page: 3-5 world documents of one kind, long enough for shingles and web-tuned
filters to mean something), `junk:menu`, `junk:keywords`, `junk:lorem`, `junk:boilerplate`,
`foreign:de|fr|es`, `exact_dup` (a clean page again, byte for byte), `near_dup` (a clean page with
`edits` word edits), and `leak` (a page with a held-out knowledge probe and its answer pasted in: test
data on the web).
A duplicate's `source` is the index of the page it copies.
"""
from __future__ import annotations

import random

from . import KINDS, World, chat_prompt, document_kind
from . import lexicon as L

MENU = ["Home", "About", "Contact", "Shop", "Login", "Cart", "Blog", "Help", "Search", "Sign up", "FAQ", "Careers"]
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua").split()
BOILERPLATE = ["We use cookies to improve your experience.", "Accept all cookies.", "Read our privacy policy.",
               "All rights reserved.", "Terms of service apply.", "Subscribe to our newsletter.",
               "Click here to learn more.", "Share this page."]
# Small sentence kits in three languages, so the language filter has something real to find.
FOREIGN = {
    "de": (["Der Film", "Das Buch", "Die Lampe", "Der Garten", "Das Fahrrad"],
           ["ist sehr schön", "war leider langweilig", "gefällt mir gut", "ist zu teuer", "hat eine tolle Musik"],
           ["und ich empfehle es allen Freunden.", "aber das Ende ist schwach.", "für den Preis.", "im Sommer."]),
    "fr": (["Le film", "Le livre", "La lampe", "Le jardin", "Le vélo"],
           ["est très beau", "était un peu ennuyeux", "me plaît beaucoup", "est trop cher", "a une belle musique"],
           ["et je le recommande à tous mes amis.", "mais la fin est faible.", "pour ce prix.", "en été."]),
    "es": (["La película", "El libro", "La lámpara", "El jardín", "La bicicleta"],
           ["es muy bonita", "fue un poco aburrida", "me gusta mucho", "es demasiado cara", "tiene una música preciosa"],
           ["y se la recomiendo a todos mis amigos.", "pero el final es débil.", "por este precio.", "en verano."]),
}
LABELS = ["clean", "junk:menu", "junk:keywords", "junk:lorem", "junk:boilerplate", "foreign:de", "foreign:fr",
          "foreign:es", "exact_dup", "near_dup", "leak"]


def page(world: World, rng: random.Random) -> str:
    """3-5 world documents of one kind joined into one page (a review site, an encyclopedia, a forum)."""
    kind = rng.choice(KINDS)
    docs: list[str] = []
    while len(docs) < rng.randint(3, 5):
        doc = world.document(rng)
        if document_kind(doc) == kind:
            docs.append(doc)
    return "\n".join(docs)


def junk(rng: random.Random, kind: str) -> str:
    if kind == "menu":
        return "\n".join(" | ".join(rng.sample(MENU, rng.randint(4, 7))) for _ in range(rng.randint(3, 6)))
    if kind == "keywords":
        product = rng.choice(L.PRODUCTS)
        words = [f"{rng.choice(['cheap', 'best', 'buy', 'sale', 'top', 'new'])} {product}" for _ in range(rng.randint(15, 30))]
        return " ".join(words)
    if kind == "lorem":
        return " ".join(LOREM[i % len(LOREM)] for i in range(rng.randint(40, 90))) + "."
    return " ".join(rng.choice(BOILERPLATE) for _ in range(rng.randint(6, 12)))


def foreign(rng: random.Random, language: str) -> str:
    subjects, verbs, tails = FOREIGN[language]
    return " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(tails)}" for _ in range(rng.randint(4, 7)))


def edit(rng: random.Random, text: str, k: int) -> str:
    """`k` random word edits (substitute, delete or insert a lexicon word)."""
    words = text.split(" ")
    for _ in range(k):
        i, op = rng.randrange(len(words)), rng.choice(["sub", "del", "ins"])
        if op == "sub":
            words[i] = rng.choice(L.NEUTRAL_ADJ)
        elif op == "del" and len(words) > 2:
            del words[i]
        else:
            words.insert(i, rng.choice(L.NEUTRAL_ADJ))
    return " ".join(words)


def leaks(world: World) -> list[str]:
    """The held-out knowledge probes with their true answers, as chat transcripts."""
    return [probe["prompt"] + probe["candidates"][probe["answer"]] for probe in world.knowledge_probes("eval")]


def leak_page(world: World, rng: random.Random, item: str) -> str:
    """A test item pasted into an ordinary page, at a random line."""
    lines = page(world, rng).split("\n")
    lines.insert(rng.randrange(len(lines) + 1), item)
    return "\n".join(lines)


def eval_items(world: World) -> list[str]:
    """What decontamination checks against: the held-out knowledge probes (question and answer) and the
    held-out chat prompts of every kind."""
    prompts = [chat_prompt(r) for kind in ("review", "harmful", "contrast", "benign", "knowledge")
               for r in world.request_texts(kind, "eval", 64)]
    return leaks(world) + sorted(set(prompts))


def raw_internet(world: World, n_pages: int, seed: int = 0, junk_share: float = 0.12, foreign_share: float = 0.06,
                 exact_share: float = 0.1, near_share: float = 0.1, max_edits: int = 3, n_leaks: int = 24) -> list[dict]:
    """`n_pages` clean pages plus the planted mess, shuffled, every copy after the page it copies (so
    "keep the first" is the right answer): [{"text", "label", "source" (copies), "edits" (near copies)}]."""
    rng = random.Random(f"{world.seed}-raw-{seed}")
    pages = [{"text": page(world, rng), "label": "clean", "key": rng.random()} for _ in range(n_pages)]
    docs = list(pages)
    for _ in range(round(n_pages * exact_share)):
        source = rng.choice(pages)
        docs.append({"text": source["text"], "label": "exact_dup", "of": source})
    for _ in range(round(n_pages * near_share)):
        source, k = rng.choice(pages), rng.randint(1, max_edits)
        docs.append({"text": edit(rng, source["text"], k), "label": "near_dup", "of": source, "edits": k})
    for _ in range(round(n_pages * junk_share)):
        kind = rng.choice(["menu", "keywords", "lorem", "boilerplate"])
        docs.append({"text": junk(rng, kind), "label": f"junk:{kind}"})
    for _ in range(round(n_pages * foreign_share)):
        language = rng.choice(list(FOREIGN))
        docs.append({"text": foreign(rng, language), "label": f"foreign:{language}"})
    for probe in leaks(world)[:n_leaks]:
        docs.append({"text": leak_page(world, rng, probe), "label": "leak"})
    for doc in docs:  # a random place in the crawl; a copy somewhere after its page
        if "key" not in doc:
            doc["key"] = doc["of"]["key"] + (1 - doc["of"]["key"]) * rng.random() if "of" in doc else rng.random()
    docs.sort(key=lambda d: d["key"])
    index = {id(d): i for i, d in enumerate(docs)}
    return [{k: v for k, v in d.items() if k not in ("key", "of")} | ({"source": index[id(d["of"])]} if "of" in d else {})
            for d in docs]
