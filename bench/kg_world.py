"""A deterministic world of one developer's work, to judge the knowledge graph's search.

:func:`build_world` draws from a seed about 340 entities (the developer and their
colleagues, teams, projects, services and jobs, libraries, command-line tools with
near-duplicate short names such as ``kubectl``/``kubectx``, files, languages, clusters,
preferences), about 500 relations, observations, and facts that changed over two years:
single-valued relations replaced by a newer value, relations closed (a maintainer
handing over, an on-call rotation moving on, a project left), observations invalidated
and observations replaced by a newer one in the same slot. Names share the domain's
common words ("... service", "... api", "billing ...", "data ...") as real ones do.

Different seeds draw different vocabularies, people, assignments and preferences, so
one seed can serve for development and others as held-out checks.

The world is plain data. :meth:`World.events` lists what an application would have
recorded, in the order it happened; ``bench/bench_kg_quality.py`` loads it through
``db.kg``'s public API. The spoken questions about it come from :mod:`bench.kg_questions`.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Literal

from bench import kg_vocabulary as v
from bench.bench_kg_retrieval import DAY, START
from bench.kg_questions import Question, make_questions

__all__ = [
    "AliasSpec",
    "EntitySpec",
    "Event",
    "ObservationSpec",
    "RelationSpec",
    "World",
    "build_world",
]

SPAN_DAYS = 730  # two years of history; "now" is the end of it


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One thing of the world: ``type`` is the schema's, ``kind`` says what it is here."""

    name: str
    type: str
    kind: str  # person, team, project, service, library, tool, infra, file, language...
    description: str
    created_at: int
    paraphrase: str = ""  # how a person describes it without quoting ``description``
    group: str = ""  # a tool's group (editor, shell...), a service's domain word


@dataclass(frozen=True, slots=True)
class AliasSpec:
    """Another name of an entity, recorded at ``at``."""

    entity: str
    alias: str
    at: int


@dataclass(frozen=True, slots=True)
class RelationSpec:
    """``subject -predicate-> object`` from ``valid_from`` until ``valid_to`` (None: holds).

    ``superseded``: ended by a newer value of a single-valued predicate (``relate``
    closes it); otherwise an end is recorded with ``invalidate``.
    """

    subject: str
    predicate: str
    object: str
    valid_from: int
    valid_to: int | None = None
    superseded: bool = False

    def holds_at(self, t: int) -> bool:
        """Tell whether the relation held at ``t``."""
        return self.valid_from <= t and (self.valid_to is None or self.valid_to > t)


@dataclass(frozen=True, slots=True)
class ObservationSpec:
    """An observation about ``entity``; ``slot`` names what a newer one replaces."""

    entity: str
    type: str
    content: str
    valid_from: int
    valid_to: int | None = None
    slot: str | None = None
    replaced: bool = False  # ended by a newer observation in the same slot, not invalidated

    def holds_at(self, t: int) -> bool:
        """Tell whether the observation held at ``t``."""
        return self.valid_from <= t and (self.valid_to is None or self.valid_to > t)


Action = Literal["entity", "alias", "relate", "observe", "end", "retract"]
_ORDER = {a: i for i, a in enumerate(("entity", "alias", "end", "retract", "relate", "observe"))}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing an application records at ``at``: what to do and with which fact."""

    at: int
    action: Action
    item: EntitySpec | AliasSpec | RelationSpec | ObservationSpec


@dataclass
class World:
    """One developer's work, the facts about it, and the questions to ask about it."""

    seed: int
    start: int
    now: int
    speaker: str  # the developer's own person entity: who asks the questions
    entities: list[EntitySpec]
    aliases: list[AliasSpec]
    relations: list[RelationSpec]
    observations: list[ObservationSpec]
    single_valued: tuple[str, ...] = v.SINGLE_VALUED
    questions: list[Question] = field(default_factory=list)

    def entity(self, name: str) -> EntitySpec:
        """Return the entity called ``name``; KeyError when there is none."""
        for spec in self.entities:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def of_kind(self, *kinds: str) -> list[EntitySpec]:
        """Return the entities of these kinds, in the order they were drawn."""
        return [e for e in self.entities if e.kind in kinds]

    def values(self, subject: str, predicate: str, at: int | None = None) -> list[str]:
        """Return the objects of ``subject -predicate->`` holding at ``at`` (default now)."""
        t = self.now if at is None else at
        return [
            r.object
            for r in self.relations
            if r.subject == subject and r.predicate == predicate and r.holds_at(t)
        ]

    def subjects(self, predicate: str, object: str, at: int | None = None) -> list[str]:
        """Return the subjects of ``-predicate-> object`` holding at ``at`` (default now)."""
        t = self.now if at is None else at
        return [
            r.subject
            for r in self.relations
            if r.object == object and r.predicate == predicate and r.holds_at(t)
        ]

    def history(self, predicate: str, *, subject: str = "", object: str = "") -> list[RelationSpec]:
        """Return every relation of ``predicate`` from ``subject`` / to ``object``, oldest first."""
        return sorted(
            (
                r
                for r in self.relations
                if r.predicate == predicate
                and (not subject or r.subject == subject)
                and (not object or r.object == object)
            ),
            key=lambda r: r.valid_from,
        )

    def events(self) -> list[Event]:
        """Return what an application records, in the order it happened."""
        events = [Event(e.created_at, "entity", e) for e in self.entities]
        events += [Event(a.at, "alias", a) for a in self.aliases]
        for r in self.relations:
            events.append(Event(r.valid_from, "relate", r))
            if r.valid_to is not None and not r.superseded:
                events.append(Event(r.valid_to, "end", r))
        for o in self.observations:
            events.append(Event(o.valid_from, "observe", o))
            if o.valid_to is not None and not o.replaced:
                events.append(Event(o.valid_to, "retract", o))
        indexed = sorted(enumerate(events), key=lambda p: (p[1].at, _ORDER[p[1].action], p[0]))
        return [event for _, event in indexed]


class _Draft:
    """The world while it is drawn: names in order, relations, observations, in days."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entities: dict[str, EntitySpec] = {}
        self.aliases: list[AliasSpec] = []
        self.relations: list[RelationSpec] = []
        self.observations: list[ObservationSpec] = []

    def at(self, day: float) -> int:
        # A time of day too, so that facts of one day keep an order.
        return START + int(day * DAY) + self.rng.randrange(8, 20) * 3_600_000

    def add(
        self,
        kind: str,
        name: str,
        what: str,
        day: float | tuple[int, int],
        said: str = "",
        group: str = "",
        aliases: str = "",
    ) -> str:
        """Add an entity; a ``(first, last)`` day is drawn between the two."""
        if isinstance(day, tuple):
            day = self.rng.randrange(*day)
        if name in self.entities:
            raise ValueError(f"the world drew {name!r} twice")
        spec = EntitySpec(name, v.TYPES.get(kind, "concept"), kind, what, self.at(day), said, group)
        self.entities[name] = spec
        for alias in aliases.split():
            self.aliases.append(AliasSpec(name, alias, self.at(day + self.rng.randrange(1, 60))))
        return name

    def names(self, kind: str, group: str = "") -> list[str]:
        return [
            e.name
            for e in self.entities.values()
            if e.kind == kind and (not group or e.group == group)
        ]

    def day_of(self, name: str) -> float:
        return (self.entities[name].created_at - START) / DAY

    def relate(
        self,
        s: str,
        p: str,
        o: str,
        day: float | None = None,
        until: float | None = None,
        superseded: bool = False,
    ) -> None:
        # An explicit day stands: entities are created before their first fact afterwards.
        if day is None:
            day = max(self.day_of(s), self.day_of(o)) + 1 + self.rng.randrange(0, 30)
        end = None if until is None else self.at(until)
        self.relations.append(RelationSpec(s, p, o, self.at(day), end, superseded))

    def sequence(self, s: str, p: str, values: list[str], first: float, last: float) -> None:
        """Give single-valued ``p`` of ``s`` each value in turn between days ``first`` and
        ``last``; ``relate`` closes each old value when the next one starts."""
        changes = sorted(self.rng.sample(range(int(first) + 20, int(last)), len(values) - 1))
        starts = [first, *changes]
        for i, value in enumerate(values):
            until = starts[i + 1] if i + 1 < len(values) else None
            self.relate(s, p, value, starts[i], until, superseded=True)

    def observe(
        self,
        e: str,
        kind: str,
        content: str,
        day: float,
        until: float | None = None,
        slot: str | None = None,
    ) -> None:
        end = None if until is None else self.at(until)
        replaced = slot is not None and until is not None
        self.observations.append(
            ObservationSpec(e, kind, content, self.at(day), end, slot, replaced)
        )


def build_world(seed: int) -> World:
    """Draw the world of ``seed``: same seed, same world and questions, in the same order."""
    d = _Draft(seed)
    _things(d)
    _relate(d)
    _observe(d)
    me = d.names("person")[0]
    now = START + SPAN_DAYS * DAY
    world = World(
        seed, START, now, me, list(d.entities.values()), d.aliases, d.relations, d.observations
    )
    _fix_creation_times(world)
    world.questions = make_questions(world, random.Random(seed * 7919 + 1))
    return world


def _things(d: _Draft) -> None:
    """Draw every entity: the same kinds for each seed, other names and numbers."""
    rng = d.rng
    names = [f"{f} {rng.choice(v.LAST)}" for f in rng.sample(v.FIRST, 26)]
    d.add("person", names[0], "the developer who uses this terminal", 0)
    for name in names[1:]:
        d.add("person", name, f"a {rng.choice(v.ROLES.split('|'))}", (0, 300))
    for name, what, said, group, aliases in v.TOOLS:
        if group != "extra" or rng.random() > 0.05:
            d.add("tool", name, what, (0, 120), said, group, aliases)
    for name, what, said, aliases in v.INFRA[:2] + rng.sample(v.INFRA[2:], 7):
        d.add("infra", name, what, (0, 60), said, aliases=aliases)
    languages = rng.sample(sorted(v.LANGUAGES), 5)
    if "python" not in languages:
        languages[0] = "python"
    for lang in languages:
        d.add("language", lang, "a programming language", (0, 30))
    for name, what, aliases in v.CLUSTERS:
        d.add("cluster", name, what, (0, 60), aliases=aliases)
    hub = rng.choice(v.MORE_HUBS)
    domains = [x for x in v.DOMAINS if x[0] in (*v.HUBS, hub)]
    domains += rng.sample([x for x in v.DOMAINS if x not in domains], 14)
    for word, what, _ in domains[:3]:
        d.add("team", f"{word} team", f"the team that owns {what}", (0, 40))
    for word in ("platform", "sre", "growth"):
        d.add("team", f"{word} team", f"the {word} engineers", (0, 40))
    # Projects: one for each of the first domains, under a codename.
    for (word, what, said), code in zip(domains[:11], rng.sample(v.CODENAMES, 11), strict=True):
        kind, lead = rng.choice(v.PROJECT_KINDS)
        d.add("project", f"{code} {kind}", f"{lead} {what}", (0, 400), f"{lead} {said}", word)
    # Libraries: open source ones of each language, internal ones per domain and generic.
    for lang in languages:
        for name in rng.sample(v.LANGUAGES[lang], min(4, len(v.LANGUAGES[lang]))):
            d.add("library", name, f"an open source {lang} library", (0, 100), group=lang)
    for word, what, said in domains[:10]:
        suffix = rng.choice(["core", "client", "sdk", "models"])
        said = f"the shared code everyone imports for {said}"
        d.add(
            "library",
            f"{word}-{suffix}",
            f"{suffix} library for {what}",
            (0, 400),
            said,
            "internal",
        )
    for name in rng.sample(v.GENERIC_LIBS, 6):
        what = f"internal {name.replace('-', ' ')} library"
        d.add("library", name, what, (0, 400), group="internal")
    # Services and jobs: six for each hub domain, one to three for the others.
    for i, (word, what, said) in enumerate(domains):
        for suffix, described, spoken in rng.sample(v.SUFFIXES, 6 if i < 3 else rng.randint(1, 3)):
            night = suffix == "job" and rng.random() < 0.5
            name = f"nightly {word} job" if night else f"{word} {suffix}"
            d.add("service", name, described.format(d=what), (0, 600), spoken.format(p=said), word)
    for name, what, said in rng.sample(v.STEM_SERVICES, 4):
        d.add("service", name, what, (0, 500), f"the thing that {said}", "misc")
    _files(d, domains)
    for line, what, said in rng.sample(v.COMMAND_LINES, 12):
        d.add("tool", line, what, (0, 500), said, "commandline")
    for topic, what in v.TOPICS:
        d.add("concept", topic, what, (0, 650), group="topic")
    for thing in v.PRACTICES:
        d.add("concept", thing, "a way of working", (0, 200), group="practice")
    for pool in (v.FONTS, v.THEMES, v.BROWSERS):
        for thing in pool:
            d.add("concept", thing, "a look and feel choice", (0, 60))


def _files(d: _Draft, domains: list[list[str]]) -> None:
    rng = d.rng
    services = d.names("service")
    for svc in services:
        slug = svc.replace(" ", "-")
        for base, what in rng.sample(v.SERVICE_FILES, rng.choice([0, 1, 1, 2])):
            day = d.day_of(svc) + rng.randrange(1, 30)
            d.add("file", f"services/{slug}/{base}", f"{what} the {svc}", day, group=svc)
    for svc in rng.sample(services, 12):
        path, what = f"runbooks/{svc.replace(' ', '-')}.md", f"what to do when the {svc} fails"
        d.add("file", path, what, d.day_of(svc) + 40, group=svc)
    for path, tool in v.DOTFILES:
        if tool in d.entities:
            d.add("file", path, f"my {tool} settings", (0, 100), group=tool)
    for path, what in v.DOCS:
        d.add("file", path, what, (100, 650))
    for word, _, _ in domains[:6]:
        hit = rng.choice(d.names("service", word))
        what = f"the incident when the {hit} went down"
        d.add("concept", f"{word} outage", what, (100, 600), group=hit)
        what = f"analysis written after the {word} outage"
        d.add("file", f"postmortems/{word}-outage.md", what, (100, 650), group=f"{word} outage")


def _relate(d: _Draft) -> None:
    rng, now = d.rng, SPAN_DAYS
    me, *colleagues = d.names("person")
    teams, managers = d.names("team"), colleagues[:4]
    # Teams and managers: a few people moved team or got a new manager.
    for person in [me, *colleagues]:
        team = rng.choice(teams)
        if rng.random() < 0.15 or person == me:
            other = rng.choice([t for t in teams if t != team])
            d.sequence(person, "member_of", [other, team], 10, now - 60)
        else:
            d.relate(person, "member_of", team, rng.randrange(0, 300))
        boss = [m for m in managers if m != person]
        if person == me or (person != managers[0] and rng.random() < 0.1):
            d.sequence(person, "reports_to", rng.sample(boss, 2), 20, now - 30)
        elif person != managers[0]:
            d.relate(person, "reports_to", rng.choice(boss), rng.randrange(0, 300))
    # Services: part of a project, written in a language, one internal library and maybe
    # an open source one, infrastructure, a cluster (some migrated), a maintainer (some
    # handed over), an owning team, reviewers.
    projects = {d.entities[p].group: p for p in d.names("project")}
    project_list, clusters = sorted(projects.values()), d.names("cluster")[:3]
    internal, languages = d.names("library", "internal"), d.names("language")
    for svc in d.names("service"):
        domain = d.entities[svc].group
        if domain in projects or rng.random() < 0.3:
            d.relate(svc, "part_of", projects.get(domain) or rng.choice(project_list))
        lang = rng.choice(languages)
        if rng.random() < 0.4:
            d.relate(svc, "written_in", lang)
        d.relate(svc, "depends_on", rng.choice(internal))
        if rng.random() < 0.2:
            d.relate(svc, "depends_on", rng.choice(d.names("library", lang)))
        for thing in rng.sample(d.names("infra"), rng.choice([0, 0, 0, 1, 1, 2])):
            d.relate(svc, "uses", thing)
        if rng.random() < 0.2:
            moved = ["legacy vm fleet", rng.choice(clusters)]
            d.sequence(svc, "deployed_on", moved, d.day_of(svc) + 1, now - 20)
        elif rng.random() < 0.75:
            d.relate(svc, "deployed_on", rng.choice(clusters))
        if rng.random() < 0.85:
            _handover(d, svc, colleagues, rng.random() < 0.15)
        if rng.random() < 0.25:
            d.relate(rng.choice(teams), "owns", svc)
        if rng.random() < 0.25:
            d.relate(svc, "reviewed_by", rng.choice(colleagues))
    for lib in internal:
        d.relate(lib, "written_in", rng.choice(languages))
        _handover(d, lib, colleagues, rng.random() < 0.2)
    for e in list(d.entities.values()):
        if e.kind == "file" and e.group in d.entities:
            d.relate(e.name, "about" if e.name.startswith("postmortems/") else "part_of", e.group)
        elif e.group == "commandline" and e.name.split()[0] in d.entities:
            d.relate(e.name, "invokes", e.name.split()[0])
        elif e.kind == "concept" and e.group in d.entities:
            d.relate(e.name, "affected", e.group)
    for person in colleagues:
        for proj in rng.sample(project_list, rng.choice([1, 1, 2])):
            d.relate(person, "works_on", proj)
    for proj in project_list:
        if rng.random() < 0.6:
            d.relate(rng.choice(colleagues), "owns", proj)
    # On-call rotations: closed with invalidate when the pager moves on.
    for svc in rng.sample(d.names("service"), 9):
        crew = rng.sample(colleagues, 3)
        days = sorted(rng.sample(range(int(d.day_of(svc)) + 5, now - 3), 2))
        d.relate(crew[0], "on_call_for", svc, days[0], days[1])
        d.relate(crew[1], "on_call_for", svc, days[1], None if rng.random() < 0.5 else now - 2)
        if d.relations[-1].valid_to is not None:
            d.relate(crew[2], "on_call_for", svc, now - 2)
    _relate_me(d, me, colleagues, project_list)


def _relate_me(d: _Draft, me: str, colleagues: list[str], projects: list[str]) -> None:
    """The speaker's projects (one left last month, one long ago), services, tools,
    preferences that changed, and what they are learning."""
    rng, now = d.rng, SPAN_DAYS
    mine = rng.sample(projects, 5)
    d.relate(me, "works_on", mine[0], 60, 300)
    d.relate(me, "works_on", mine[1], 380, now - 20)
    d.relate(me, "works_on", mine[2], now - 20)
    for proj in mine[3:]:
        d.relate(me, "works_on", proj, rng.randrange(200, 600))
    for svc in rng.sample(d.names("service"), 3):
        d.relate(me, "maintains", svc)
    d.relate(me, "on_call_for", rng.choice(d.names("service")), now - 5)
    plain = [t for t in d.names("tool") if d.entities[t].group in ("core", "extra")]
    for tool in rng.sample(plain, 6) + rng.sample(d.names("tool", "commandline"), 4):
        d.relate(me, "uses", tool, rng.randrange(0, 600))
    prefs = [
        ("preferred_editor", d.names("tool", "editor"), 3),
        ("preferred_shell", d.names("tool", "shell"), 3),
        ("uses_terminal", d.names("tool", "terminal"), 2),
        ("preferred_font", v.FONTS, 2),
        ("preferred_theme", v.THEMES, 3),
        ("preferred_browser", v.BROWSERS, 2),
    ]
    for predicate, pool, count in prefs:
        d.sequence(me, predicate, rng.sample(pool, count), 5, now - 25)
        for person in rng.sample(colleagues, 2):
            d.relate(person, predicate, rng.choice(pool))
    d.sequence(me, "learning", rng.sample(d.names("language"), 2), 100, now - 40)
    for thing in rng.sample(d.names("concept", "practice"), 4):
        d.relate(me, "prefers", thing, rng.randrange(0, 500))
    for topic in rng.sample(d.names("concept", "topic"), 5):
        d.relate(me, "interested_in", topic)


def _handover(d: _Draft, thing: str, people: list[str], changed: bool) -> None:
    old, new = d.rng.sample(people, 2)
    if changed:  # closed with invalidate, a new maintainer related
        start = d.day_of(thing) + 2
        switch = d.rng.randrange(int(start) + 10, SPAN_DAYS - 10)
        d.relate(old, "maintains", thing, start, switch)
        d.relate(new, "maintains", thing, switch)
    else:
        d.relate(new, "maintains", thing)


def _observe(d: _Draft) -> None:
    rng, now = d.rng, SPAN_DAYS
    me, *colleagues = d.names("person")
    services = d.names("service")
    facts = [
        "deploys are frozen on fridays",
        "p99 latency is about {n} ms",
        "runs on {n} replicas",
        "its ci pipeline takes {n} minutes",
        "pages the on-call when the queue backs up",
        "has a flaky integration test",
    ]
    for svc in rng.sample(services, 20):
        text = rng.choice(facts).format(n=rng.randrange(3, 400))
        d.observe(svc, "fact", text, d.day_of(svc) + rng.randrange(2, 90))
    cities = ["lisbon", "nairobi", "toronto", "berlin", "osaka", "bogota", "warsaw", "pune"]
    for person in rng.sample(colleagues, 12):
        text = rng.choice(
            [
                f"is based in {rng.choice(cities)}",
                "prefers async code reviews",
                "gives the internal tech talks",
                "joined from the acquisition",
                "works four days a week",
            ]
        )
        d.observe(person, "fact", text, rng.randrange(100, 700))
    for kind, text in [
        ("preference", "likes review comments to be short and direct"),
        ("behavior", "usually deploys in the morning"),
        ("pattern", "runs the whole test suite before every push"),
        ("behavior", "keeps a scratch terminal open for notes"),
    ]:
        d.observe(me, kind, text, rng.randrange(0, 500))
    # Status in a slot: a newer status replaces the older one of the same service.
    a, b, c, e = rng.sample(services, 4)
    switch = rng.randrange(300, 600)
    bad = "status: degraded, error rate above five percent"
    d.observe(a, "fact", bad, switch - 40, switch, slot="status")
    d.observe(a, "fact", "status: healthy again after the hotfix", switch, slot="status")
    d.observe(b, "fact", "status: healthy", switch - 100, now - 6, slot="status")
    d.observe(b, "fact", bad, now - 6, slot="status")
    # Plain observations that ended: a migration done, a block lifted.
    d.observe(c, "fact", "is being migrated to kubernetes", 200, now - 90)
    d.observe(e, "fact", "is being migrated to kubernetes", now - 30)
    d.observe(a, "fact", "is blocked on a security audit", 150, 330)
    d.observe(c, "fact", "is blocked on a security audit", now - 15)


def _fix_creation_times(world: World) -> None:
    """Create each entity no later than its first fact, as an application would have."""
    first: dict[str, int] = {}
    for name, t in (
        [(n, r.valid_from) for r in world.relations for n in (r.subject, r.object)]
        + [(o.entity, o.valid_from) for o in world.observations]
        + [(a.entity, a.at) for a in world.aliases]
    ):
        first[name] = min(first.get(name, t), t)
    world.entities = [
        dataclasses.replace(
            e, created_at=min(e.created_at, first.get(e.name, e.created_at) - 60_000)
        )
        for e in world.entities
    ]
