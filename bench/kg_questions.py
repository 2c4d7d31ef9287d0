"""Spoken questions about a :class:`~bench.kg_world.World`, with the entities that answer them.

Questions are phrased the way people talk to a voice assistant (lower case, fillers,
contractions, seldom punctuation), from several templates per category (alternatives
separated by ``|``), and drawn with the world's seed. Categories (:data:`CATEGORIES`):

- ``generic``: the key name holds a word many names share ("what does the billing
  service depend on").
- ``predicate_stem``: ordinary words whose stem is part of a predicate's name, in a
  question about something else ("open the deploy script for ...").
- ``multi_hop``: two relations to follow; the answer is the entity at the end.
- ``changing``: the current value of a fact that changed.
- ``past``: the value a fact had before ("what editor did I use before this one").
- ``voice``: names as a speech recogniser writes them ("jay queue" for jq), made by
  rules (letter names, syllable splits, sound substitutions, a wrong letter), and the
  jargon developers say aloud ("k eight s", "tf", "prod").
- ``self``: "I" and "my", answered by the speaker's own relations.
- ``direct``: an entity named, or described by what it does in other words.
- ``unanswerable``: the graph does not know; the right answer is nothing.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.kg_vocabulary import JARGON, pairs, spoken_forms, words

if TYPE_CHECKING:
    from bench.kg_world import RelationSpec, World

__all__ = ["CATEGORIES", "Question", "make_questions", "spoken"]

CATEGORIES = tuple(
    words("generic predicate_stem multi_hop changing past voice self direct unanswerable")
)
DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class Question:
    """A question, its category and the entity names that answer it (any one counts).

    ``answers`` is empty for a question the graph cannot answer. ``note`` says which
    time a question about the past means.
    """

    text: str
    category: str
    answers: frozenset[str]
    note: str | None = None


FILLERS = words(
    "hey|um|uh|so|okay so|hey mango|can you tell me|do you know|quick question|remind me|"
    "i forgot|hmm",
    "|",
)
TAILS = words("please|again|real quick|for me|if you remember", "|")


def spoken(name: str) -> str:
    """How a person says an entity's name: separators as spaces."""
    return " ".join(re.sub(r"[-_/.]+", " ", name).split())


# --- the questions -------------------------------------------------------------------


class _Asker:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.w, self.rng, self.me = world, rng, world.speaker
        self.questions: list[Question] = []
        self.seen: set[str] = set()

    def say(self, text: str) -> str:
        rng = self.rng
        if rng.random() < 0.45:
            text = f"{rng.choice(FILLERS)} {text}"
        if rng.random() < 0.15:
            text = f"{text} {rng.choice(TAILS)}"
        return text + ("?" if rng.random() < 0.3 else "")

    def add(
        self, category: str, templates: str, answers: list[str], note: str = "", **names: str
    ) -> bool:
        """Ask one of the ``|``-separated templates, unless nothing answers it."""
        if category != "unanswerable" and not answers:
            return False
        text = self.say(self.rng.choice(templates.split("|")).format(**names))
        if text in self.seen:
            return False
        self.seen.add(text)
        self.questions.append(Question(text, category, frozenset(answers), note or None))
        return True

    def kind(self, *kinds: str) -> list[str]:
        return [e.name for e in self.w.of_kind(*kinds)]

    def shuffled(self, items: list[str]) -> list[str]:
        items = list(items)
        self.rng.shuffle(items)
        return items


def _first(name: str) -> str:
    return name.split()[0]


# predicate | "out" asks for objects, "in" for subjects | templates
RELATED = [
    row.split("^")
    for row in """
depends_on^out^what does the {x} depend on|which libraries does the {x} pull in|\
what's the {x} built on top of
maintains^in^who maintains the {x}|who's the maintainer of the {x}|who do i ask about the {x} code
written_in^out^what is the {x} written in|which language is the {x} in|\
what language did we use for the {x}
deployed_on^out^where is the {x} deployed|which cluster does the {x} run on|where does the {x} live
part_of^out^which project is the {x} part of|what project does the {x} belong to
uses^out^what does the {x} use|which of our infrastructure does the {x} use
""".strip().splitlines()
]


def _related(a: _Asker, category: str, name: str, exclude: str = "") -> bool:
    for predicate, direction, templates in a.rng.sample(RELATED, len(RELATED)):
        if predicate == exclude:
            continue
        found = a.w.values(name, predicate) if direction == "out" else a.w.subjects(predicate, name)
        if found and a.add(category, templates, found, x=spoken(name)):
            return True
    return False


def _generic(a: _Asker) -> None:
    counts: dict[str, int] = {}
    for e in a.w.entities:
        for word in set(re.findall(r"[a-z]+", e.name)):
            counts[word] = counts.get(word, 0) + 1
    common = {w for w, n in counts.items() if n >= 5 and len(w) > 2}
    pool = [n for n in a.kind("service", "library") if common & set(re.findall(r"[a-z]+", n))]
    made = 0
    for name in a.shuffled(pool):
        made += _related(a, "generic", name)
        if made >= 26:
            return


# file name ending | templates asking for the file of a service
STEM_FILES = [
    row.split("|", 1)
    for row in """
deploy.sh|open the deploy script for the {x}|show me how the {x} gets deployed|\
where's the deployment script of the {x}
requirements.txt|show me the dependency list for the {x}|which file pins the dependencies \
of the {x}
config.yaml|i want to review the config of the {x}|pull up the {x} settings file so i can \
review it
""".strip().splitlines()
]


def _predicate_stem(a: _Asker) -> None:
    w, rng, files = a.w, a.rng, a.kind("file")
    stems = {
        "report builder": "reports_to",
        "call router": "on_call_for",
        "review bot": "reviewed_by",
        "member directory api": "member_of",
        "preferences service": "preferred_editor",
    }
    for name, stem in stems.items():
        if name in a.kind("service"):
            _related(a, "predicate_stem", name, exclude=stem)
            _related(a, "predicate_stem", name, exclude=stem)
    for ending, templates in STEM_FILES:
        paths = [f for f in files if f.endswith(ending)]
        for path in rng.sample(paths, min(3, len(paths))):
            a.add("predicate_stem", templates, [path], x=spoken(w.values(path, "part_of")[0]))
    for tool in rng.sample([t.name for t in w.of_kind("tool") if t.group != "commandline"], 4):
        templates = "how do i use {x}|remind me how to use {x}|what's the right way to use {x}"
        a.add("predicate_stem", templates, [tool], x=spoken(tool))
    docs = pairs("""
docs/maintainers-guide.md|open the maintainers guide
docs/maintainers-guide.md|where's the guide for maintainers
docs/review-checklist.md|pull up the review checklist
docs/review-checklist.md|what's on the checklist for reviews
notes/work-notes.md|open my work notes
notes/work-notes.md|where do i keep notes about work
~/.zshrc|where's my own zsh config
""")
    for path, text in docs:
        if path in files:
            a.add("predicate_stem", text, [path])
    for path in [f for f in files if f.startswith("postmortems/")][:3]:
        templates = (
            "show me what was written after the {x} outage|the write up about the {x} outage"
        )
        a.add("predicate_stem", templates, [path], x=path.split("/")[1].split("-")[0])


def _multi_hop(a: _Asker) -> None:
    w, made = a.w, 0
    for svc in a.shuffled(a.kind("service")):
        libs = [lib for lib in w.values(svc, "depends_on") if w.entity(lib).group == "internal"]
        keepers, oncall = w.subjects("maintains", svc), w.subjects("on_call_for", svc)
        options = [
            (
                "who maintains the library the {x} depends on|the {x} depends on a library, who "
                "maintains that|whose library does the {x} rely on",
                [p for lib in libs for p in w.subjects("maintains", lib)],
            ),
            (
                "what language is the library behind the {x} written in|which language is the "
                "library the {x} depends on in",
                [x for lib in libs for x in w.values(lib, "written_in")],
            ),
            (
                "which team is the maintainer of the {x} on|what team does whoever maintains the "
                "{x} belong to",
                [t for p in keepers for t in w.values(p, "member_of")],
            ),
            (
                "who does the person on call for the {x} report to|who's the manager of whoever "
                "is on call for the {x}",
                [b for p in oncall for b in w.values(p, "reports_to")],
            ),
        ]
        templates, answers = a.rng.choice(options)
        made += a.add("multi_hop", templates, answers, x=spoken(svc))
        if made >= 20:
            break
    services = set(a.kind("service"))
    for person in a.shuffled(a.kind("person"))[:10]:
        kept = [s for s in w.values(person, "maintains") if s in services]
        if len(kept) == 1 and person != a.me:
            templates = (
                "what project is the service {x} maintains part of|which project "
                "does the service that {x} looks after belong to"
            )
            a.add("multi_hop", templates, w.values(kept[0], "part_of"), x=person)


def _previous(
    history: list[RelationSpec], now: int, *, ask_subject: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Return (current values, the values just before them, every earlier value): the
    relations' objects, or their subjects with ``ask_subject``."""

    def end(r: RelationSpec) -> str:
        return r.subject if ask_subject else r.object

    current = [end(r) for r in history if r.holds_at(now)]
    old = [r for r in history if not r.holds_at(now)]
    last_end = max((r.valid_to or 0) for r in old) if old else 0
    before = [end(r) for r in old if r.valid_to == last_end]
    return current, before, [end(r) for r in old]


# predicate | noun | verb phrase | what it is used for
PREFS = [
    row.split("|")
    for row in """
preferred_editor|editor|edit code with|editing
preferred_shell|shell|use as my shell|my shell
uses_terminal|terminal|use as a terminal|a terminal app
preferred_font|font|use as my coding font|the font in my editor
preferred_theme|theme|use as my colour theme|colours in the editor
preferred_browser|browser|browse with|browsing
""".strip().splitlines()
]


def _preferences(a: _Asker) -> None:
    w, me, now = a.w, a.me, a.w.now
    for predicate, noun, verb, use in PREFS:
        current, before, earlier = _previous(w.history(predicate, subject=me), now)
        a.add(
            "changing",
            f"which {noun} do i use these days|what's my {noun} now|what "
            f"{noun} am i on at the moment|what do i {verb} nowadays",
            current,
        )
        a.add(
            "past",
            f"what {noun} did i use before this one|which {noun} did i have before "
            f"{{c}}|what was my previous {noun}",
            before,
            c=spoken(current[0]),
        )
        a.add(
            "past", f"what did i use to use for {use}|which {noun} did i use in the past", earlier
        )
    year_ago = now - 365 * DAY
    shells = [r.object for r in w.history("preferred_shell", subject=me) if r.holds_at(year_ago)]
    if shells != w.values(me, "preferred_shell"):
        a.add(
            "past",
            "what shell was i using a year ago|which shell did i use last year",
            shells,
            note="as of one year before now",
        )
    mine = w.history("works_on", subject=me)
    last_month = [
        r.object
        for r in mine
        if not r.holds_at(now)
        and r.valid_from < now - 30 * DAY
        and (r.valid_to or now) > now - 60 * DAY
    ]
    a.add(
        "past",
        "what was i working on last month|which project was i on last month",
        last_month,
        note="held between 60 and 30 days before now, ended since",
    )
    current, before, _ = _previous(w.history("learning", subject=me), now)
    a.add("changing", "what language am i learning these days", current)
    a.add("past", "what language was i learning before {c}", before, c=spoken(current[0]))


def _handed_over(a: _Asker) -> None:
    w, now = a.w, a.w.now
    rotations = sorted({r.object for r in w.relations if r.predicate == "on_call_for"})
    for svc in a.shuffled(rotations)[:5]:
        current, before, _ = _previous(w.history("on_call_for", object=svc), now, ask_subject=True)
        if before:
            a.add(
                "changing",
                "who is on call for the {x} now|who's got the pager for the {x} "
                "right now|who should i page about the {x} today",
                current,
                x=spoken(svc),
            )
            a.add(
                "past",
                "who was the previous on call for the {x}|who had the pager for the {x} before",
                before,
                x=spoken(svc),
            )
    ended = [r for r in w.relations if r.valid_to is not None]
    for thing in a.shuffled(sorted({r.object for r in ended if r.predicate == "maintains"}))[:3]:
        current, before, _ = _previous(w.history("maintains", object=thing), now, ask_subject=True)
        a.add(
            "changing",
            "who maintains the {x} now|who took over the {x}|who looks after the {x} these days",
            current,
            x=spoken(thing),
        )
        a.add(
            "past",
            "who used to maintain the {x}|who was the old maintainer of the {x}",
            before,
            x=spoken(thing),
        )
    for thing in a.shuffled(sorted({r.subject for r in ended if r.predicate == "deployed_on"}))[:3]:
        current, before, _ = _previous(w.history("deployed_on", subject=thing), now)
        a.add(
            "changing",
            "where does the {x} run now|which cluster is the {x} on these days",
            current,
            x=spoken(thing),
        )
        a.add(
            "past",
            "where was the {x} deployed before|where did the {x} run before the move",
            before,
            x=spoken(thing),
        )


def _moved(a: _Asker) -> None:
    w, me, now = a.w, a.me, a.w.now
    asks = [
        (
            "member_of",
            "which team is {x} on now|what team did {x} move to",
            "which team was {x} on before|what team was {x} in previously",
            "which team am i on now",
            "which team was i on before|what team was i in before {c}",
        ),
        (
            "reports_to",
            "who does {x} report to now|who's {x}'s manager these days",
            "who did {x} report to before|who was {x}'s previous manager",
            "who's my manager now",
            "who did i report to before {c}|who was my previous manager",
        ),
    ]
    for predicate, now_t, past_t, my_now, my_past in asks:
        for person in sorted(
            {r.subject for r in w.relations if r.predicate == predicate and r.valid_to}
        ):
            current, before, _ = _previous(w.history(predicate, subject=person), now)
            said = spoken(_first(current[0]) if predicate == "reports_to" else current[0])
            if person == me:
                a.add("changing", my_now, current)
                a.add("past", my_past, before, c=said)
            else:
                a.add("changing", now_t, current, x=_first(person))
                a.add("past", past_t, before, x=_first(person))


def _observed(a: _Asker) -> None:
    w, now = a.w, a.w.now

    def holders(prefix: str) -> list[str]:
        return [
            o.entity for o in w.observations if o.content.startswith(prefix) and o.holds_at(now)
        ]

    asks = [
        (
            "status: degraded",
            "which service is degraded right now|what's broken at the moment|"
            "which service has a high error rate today",
            "which service was degraded before the "
            "hotfix|which service had the high error rate earlier",
        ),
        (
            "is being migrated",
            "what are we migrating to kubernetes at the moment|which service "
            "is being moved to kubernetes now",
            "which service did we migrate to kubernetes before",
        ),
        (
            "is blocked",
            "what's blocked on the security audit right now",
            "what was blocked on the security audit last year",
        ),
    ]
    for prefix, now_t, past_t in asks:
        a.add("changing", now_t, holders(prefix))
        ended = [o.entity for o in w.observations if o.content.startswith(prefix) and o.valid_to]
        a.add("past", past_t, [e for e in ended if e not in holders(prefix)])


def _voice(a: _Asker) -> None:
    w, made = a.w, 0
    targets = [e.name for e in w.of_kind("tool", "infra") if e.group != "commandline"]
    for name in a.shuffled([t for t in targets if spoken_forms(t)]):
        form = a.rng.choice(spoken_forms(name))
        users = w.subjects("uses", name)
        if users and w.entity(name).kind == "infra" and a.rng.random() < 0.5:
            made += a.add("voice", "which services use {x}|what runs on {x}", users, x=form)
        else:
            templates = (
                "open {x}|what's {x} for|what is {x}|how do i install {x}|do i have {x} set up"
            )
            made += a.add("voice", templates, [name], x=form)
        if made >= 20:
            break
    names = {e.name for e in w.entities}
    for name, forms in JARGON.items():
        if name not in names:
            continue
        form, kind = a.rng.choice(forms), w.entity(name).kind
        if kind == "cluster":
            templates = "what's running on {x}|which services are on {x}"
            a.add("voice", templates, w.subjects("deployed_on", name), x=form)
        elif kind == "language":
            templates = "what have we written in {x}|what's written in {x}"
            a.add("voice", templates, w.subjects("written_in", name), x=form)
        else:
            a.add("voice", "what is {x} again|open {x}|tell me about {x}", [name], x=form)


SELF = [
    row.split("|", 1)
    for row in """
works_on|which projects am i working on|what am i working on right now|what's on my plate \
these days
reports_to|who do i report to|who's my manager
member_of|what team am i on|which team am i in
maintains|what do i maintain|which services do i look after
uses|which tools do i use|what command line tools do i have
on_call_for|what am i on call for|which service am i carrying the pager for
learning|what language am i learning
prefers|what ways of working do i prefer|how do i like to work
preferred_shell|what's my favourite shell|which shell do i like
preferred_editor|what's my editor|which editor do i prefer
uses_terminal|what terminal do i use|which terminal app is mine
preferred_font|what font do i like|what's my coding font
preferred_theme|which theme do i like|what's my colour scheme
preferred_browser|what browser do i use|which browser is my default
""".strip().splitlines()
]


def _self(a: _Asker) -> None:
    for predicate, templates in SELF:
        options = templates.split("|")
        for template in a.rng.sample(options, min(2, len(options))):
            a.add("self", template, a.w.values(a.me, predicate))


def _direct(a: _Asker) -> None:
    w, made = a.w, 0
    for e in [w.entity(n) for n in a.shuffled(a.kind("service", "project", "library", "tool"))]:
        if e.paraphrase and (a.rng.random() < 0.6 or e.group == "commandline"):
            if e.kind == "tool":
                templates = "what's the tool to {p}|which command do i use to {p}|how do i {p}"
            else:
                templates = "which one is {p}|what's {p} called again|what do we call {p}"
            made += a.add("direct", templates, [e.name], p=e.paraphrase)
        else:
            the = "the " if e.kind in ("service", "project") else ""
            templates = (
                f"what is {the}{{x}}|tell me about {the}{{x}}|open {{x}}|what do you "
                "know about {x}"
            )
            made += a.add("direct", templates, [e.name], x=spoken(e.name))
        if made >= 20:
            break
    for person in a.shuffled([p for p in a.kind("person") if p != a.me])[:6]:
        name = a.rng.choice([person, _first(person)])
        a.add("direct", "who is {x}|tell me about {x}|what do you know about {x}", [person], x=name)


UNANSWERABLE = """
what's my cat's name
when is my dentist appointment
what's the wifi password at my parents place
who won the football match last night
when is my sister's birthday
how much did i pay for my car
what's the weather going to be tomorrow
where did i park
what's my blood type
which restaurant did i book for friday
what's my passport number
when does my gym membership expire
what's the name of my landlord
how tall is the eiffel tower
what did i have for breakfast
who maintains the quantum teleporter service
what language is the spaceship api written in
where is the unicorn job deployed
what's my favourite pizza topping
which yoga class do i go to on mondays
who is my doctor
when is my flight to lisbon
what's my mom's phone number
how many steps did i walk today
what's the plot of the book i'm reading
""".strip().splitlines()


def make_questions(world: World, rng: random.Random) -> list[Question]:
    """Draw the spoken questions about ``world`` with ``rng``, category by category."""
    a = _Asker(world, rng)
    for ask in (
        _generic,
        _predicate_stem,
        _multi_hop,
        _preferences,
        _handed_over,
        _moved,
        _observed,
        _voice,
        _self,
        _direct,
    ):
        ask(a)
    for text in rng.sample(UNANSWERABLE, 12):
        a.add("unanswerable", text, [])
    return a.questions
