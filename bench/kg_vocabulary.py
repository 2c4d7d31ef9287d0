"""The words a :mod:`bench.kg_world` world is drawn from, and how they are heard.

People, codenames, business domains, service suffixes, command-line tools,
infrastructure, languages and libraries, clusters, topics and preferences, each with
what it does and how a person would say that in other words (so that a question can
describe a thing without quoting it). Then how a speech recogniser writes names
(:func:`spoken_forms`: letter names, syllables split apart, sound-alike spellings,
words run together, a wrong letter) and the jargon developers say aloud (:data:`JARGON`).
"""

from __future__ import annotations

import re

__all__ = [
    "BROWSERS",
    "CLUSTERS",
    "CODENAMES",
    "COMMAND_LINES",
    "DOCS",
    "DOMAINS",
    "DOTFILES",
    "FIRST",
    "FONTS",
    "GENERIC_LIBS",
    "HUBS",
    "INFRA",
    "JARGON",
    "LANGUAGES",
    "LAST",
    "MORE_HUBS",
    "PRACTICES",
    "PROJECT_KINDS",
    "ROLES",
    "SERVICE_FILES",
    "SINGLE_VALUED",
    "STEM_SERVICES",
    "SUFFIXES",
    "THEMES",
    "TOOLS",
    "TOPICS",
    "TYPES",
    "pairs",
    "spoken_forms",
    "table",
    "words",
]


def words(text: str, sep: str | None = None) -> list[str]:
    """The words of ``text`` (split at ``sep``, default whitespace)."""
    return text.split(sep)


def pairs(text: str) -> list[tuple[str, str]]:
    """``a|b`` lines as pairs; ``_`` stands for a space that would be invisible."""
    rows = [line.replace("_", " ").split("|") for line in text.strip().splitlines()]
    return [(a, b) for a, b in rows]


def table(text: str) -> list[list[str]]:
    """Rows of a ``|``-separated table, one a line."""
    return [line.split("|") for line in text.strip().splitlines()]


FIRST = words(
    "amara bjorn chen dara emeka freya gustavo hana ivan jonas keiko lars maya nikhil olga "
    "pavel quentin rania sami tara ugo vera wei ximena yara zainab aditya beatriz cyrus elif "
    "felix giulia hamid ingrid joao kwame leila marco noor omar petra ravi sofia theo ulla "
    "valentin wanjiru yusuf zofia arjun carmen dmitri esther farah georg hugo isla kasia"
)
LAST = words(
    "okafor lindqvist tanaka moreau kowalski haddad nguyen silva fischer rossi novak "
    "mensah oconnor yamamoto petrov castillo berg dubois ivanova costa meyer sato "
    "andersen khan osei romero virtanen kaur schmidt bianchi hughes larsen mwangi"
)
CODENAMES = words(
    "falcon atlas nimbus orion kestrel juniper cobalt ember quartz tundra zephyr harbor "
    "lumen sable vega pulsar magpie osprey cedar basalt"
)
ROLES = "backend engineer|data engineer|sre|frontend engineer|engineering manager|designer"
PROJECT_KINDS = table("""
platform|the platform behind
mobile app|the phone app for
migration|moving to new infrastructure the systems for
revamp|a redesign of
rewrite|a from-scratch rewrite of
portal|the partner web portal for
""")
# word in names | what a description says | how a person says it instead
DOMAINS = table("""
billing|invoices and recurring charges|the bills we send to customers
data|warehouse tables and analytics events|the numbers the analysts crunch
payments|card payments and payouts|taking money off credit cards
search|the product search index|finding products when people type in the box
identity|logins, sessions and user accounts|signing people in
checkout|the basket checkout flow|where shoppers pay for their cart
ledger|double entry accounting records|the bookkeeping of every money movement
catalog|product listings and their attributes|the list of things we sell
inventory|stock levels per warehouse|how many items are left on the shelves
shipping|parcel labels and carrier tracking|getting boxes to people's doors
notification|emails, sms and push messages|pinging people on their phones
fraud|risk scores for suspicious transactions|catching scammers before they buy
pricing|discount rules and price lists|what things cost after coupons
loyalty|reward points and customer tiers|points people earn when they shop
media|image uploads and thumbnails|shrinking the pictures people upload
audit|the compliance event trail|the record of who did what for the auditors
support|help desk tickets|the queue of customer complaints
recommendation|personalised product suggestions|the you might also like stuff
geo|address lookup and geocoding|turning street addresses into map coordinates
subscription|plans, trials and renewals|monthly plans that renew by themselves
tax|sales tax and vat calculation|working out how much vat to add
forecast|demand forecasting models|guessing how much we will sell next quarter
""")
HUBS = ("billing", "data")  # always drawn: many names share these words
MORE_HUBS = ("payments", "search", "identity")
# suffix | description over the domain's text | paraphrase over its spoken form
SUFFIXES = table("""
service|backend service for {d}|the main backend behind {p}
api|http api exposing {d}|the endpoints other teams call for {p}
worker|background worker processing {d}|the thing that crunches {p} behind the scenes
job|nightly batch job reconciling {d}|the overnight run that tidies up {p}
gateway|edge gateway routing requests for {d}|the front door for {p} traffic
dashboard|internal dashboard showing {d}|the screen where people look at {p}
pipeline|streaming pipeline loading {d} into the warehouse|the stream carrying {p} to analytics
exporter|exports metrics about {d} to monitoring|the thing sending graphs about {p} to monitoring
consumer|kafka consumer handling events about {d}|the listener for events about {p}
sync|keeps {d} in step with the vendor system|the mirror of {p} at the outside vendor
scheduler|schedules recurring tasks for {d}|the thing that kicks off timed tasks around {p}
cli|admin command line tool for {d}|the terminal tool ops use for {p}
""")
# Services whose names hold ordinary words that stem like a predicate's name.
STEM_SERVICES = table("""
report builder|renders the weekly sales pdfs|makes the pdf summaries every week
call router|routes phone calls to the support desk|sends ringing phones to agents
review bot|comments on pull requests with lint results|leaves lint notes on prs
member directory api|looks up staff profiles|finds a colleague's profile
preferences service|stores user settings|remembers people's settings
""")
# name | what it does | how a person says it without quoting that | group | aliases
TOOLS = table("""
git|distributed version control|tracks every change to my code|core|
gh|github command line for pull requests|open a pr from the terminal|core|
lazygit|terminal ui for git|a menu driven way to stage and commit|extra|
kubectl|command line client for kubernetes|poke at the pods in the cluster|core|
kubectx|switches between kubernetes contexts|flip which cluster i'm pointed at|core|
kubens|switches the default kubernetes namespace|change which namespace commands hit|core|
k9s|full screen terminal ui for kubernetes|watch pods live in a full screen view|extra|
helm|package manager for kubernetes charts|install charts onto the cluster|extra|
stern|tails logs from many pods at once|follow logs across several pods|extra|
docker|builds and runs containers|make images and start containers|core|
podman|daemonless container engine|run containers without a background daemon|extra|
terraform|infrastructure as code provisioning|declare cloud resources in files and apply them|core|
terragrunt|keeps terraform configurations dry|share infra config across environments|core|
ansible|configuration management over ssh|push setup to a fleet of machines|extra|
jq|command line json processor|slice and filter json output|core|
yq|yaml processor in the style of jq|edit yaml files from the shell|core|
fzf|fuzzy finder for the terminal|pick from a list by typing a few letters|core|
fd|fast alternative to find|locate files by name quickly|core|
ripgrep|recursive grep that respects gitignore|search all the code for a string really fast|extra|rg
bat|cat clone with syntax highlighting|print a file with colours|extra|
htop|interactive process viewer|see which process is eating cpu|core|
btop|resource monitor with graphs|see pretty graphs of cpu and memory|core|
tmux|terminal multiplexer|split the terminal and keep sessions alive|extra|
pytest|python test runner|run the python tests|core|
ruff|fast python linter|catch style problems in python code|extra|
mypy|static type checker for python|check the type hints|extra|
poetry|python packaging and dependency manager|lock python packages for a project|extra|
pip|installs python packages|add a python package|core|
pipx|installs python applications in isolated environments|install python apps on their own|core|
pyenv|switches between python versions|have several pythons side by side|extra|
npm|node package manager|install javascript packages|core|
npx|runs a package binary without installing it|run a node tool once|core|
make|runs build recipes from a makefile|run the build recipes|core|
cmake|generates build files for c and c++|set up a c plus plus build|core|
curl|transfers data with urls|hit an endpoint from the shell|extra|
httpie|human friendly http client|send a request with nicer output|extra|
rsync|copies files efficiently between machines|mirror a folder to a server|extra|
psql|postgres interactive terminal|get a sql prompt on the database|core|
pgcli|postgres client with autocompletion|get a sql prompt that completes table names|core|
redis-cli|command line client for redis|look at keys in the cache|extra|
aws|amazon web services command line|manage our amazon account|extra|
gcloud|google cloud command line|manage our google cloud project|extra|
minikube|runs a local kubernetes cluster|run a cluster on my laptop|extra|
direnv|loads environment variables per directory|set env vars when i cd into a folder|extra|
pre-commit|runs checks before each commit|lint automatically before committing|extra|
ncdu|disk usage analyzer|find what fills the disk|extra|
vim|modal text editor|edit with modes like in the old days|editor|
neovim|extensible fork of vim|edit in the vim fork that is set up in lua|editor|nvim
helix|modal editor with language server support|edit selection first with completions|editor|hx
emacs|extensible lisp editor|edit in the editor you program with parentheses|editor|
vscode|microsoft code editor|edit in the electron app with all the plugins|editor|code
sublime text|fast graphical text editor|edit in the snappy window editor|editor|subl
bash|the bourne again shell|get the default prompt of most linux boxes|shell|
zsh|z shell with rich completion|get the prompt macs ship with|shell|
fish|friendly interactive shell|get suggestions as i type at the prompt|shell|
nushell|shell that pipes structured data|pipe tables between commands|shell|nu
alacritty|gpu accelerated terminal emulator|open the minimal fast terminal window|terminal|
kitty|gpu terminal emulator with tabs and images|show pictures in the terminal window|terminal|
wezterm|terminal emulator configured in lua|open the terminal window scripted in lua|terminal|
iterm2|macos terminal emulator|open the classic mac terminal app|terminal|iterm
ghostty|native fast terminal emulator|open the new native terminal app|terminal|
""")
# command lines I run often: line | what it does | how a person says it
COMMAND_LINES = table("""
docker compose up --build|rebuilds and starts the local containers|bring the whole stack up fresh
git rebase -i main|rewrites the branch's commits interactively|squash my commits before merging
make test|runs the unit tests through the makefile|kick off the test target
kubectl rollout restart deployment|restarts the pods of a deployment|bounce the pods
terraform plan|shows what infrastructure changes would be applied|preview the infra changes
pytest -x -k smoke|runs the smoke tests until one fails|run the quick checks, halt on error
git push --force-with-lease|pushes a rewritten branch safely|overwrite the remote branch carefully
psql -c 'vacuum analyze'|cleans up and analyses the postgres tables|tidy the database statistics
tail -f /var/log/syslog|follows the system log|watch the machine's log live
ssh bastion|opens a shell on the jump host|hop onto the jump box
npm run build|bundles the frontend for production|build the web assets
helm upgrade --install|installs or upgrades a chart release|roll out a new chart version
docker system prune|frees disk taken by old images|clean up docker junk
git bisect start|starts hunting the commit that broke something|find which commit introduced the bug
aws s3 sync|copies a folder to an s3 bucket|upload the folder to the bucket
openssl s_client -connect|inspects a server's tls certificate|check the certificate on a host
""")
# name | what it is | how a person says it | aliases
INFRA = table("""
postgres|relational database|where the tables live|postgresql
kubernetes|container orchestrator|what schedules our containers|k8s
redis|in memory key value cache|the cache in front of the database|
kafka|event streaming log|where services publish events|
rabbitmq|message broker|the queue between services|
elasticsearch|full text search engine|the thing that indexes text|
grafana|dashboards for metrics|where the graphs are|
prometheus|metrics time series database|what scrapes the metrics|
nginx|reverse proxy and web server|what sits in front of the web apps|
vault|secrets store|where the passwords are kept|
sentry|error tracking|where exceptions get reported|
clickhouse|columnar analytics database|the fast analytics store|
""")
LANGUAGES = {
    row[0]: row[1].split(",")
    for row in table("""
python|sqlalchemy,pydantic,fastapi,celery,httpx,pandas,alembic
go|cobra,gin,zap,testify
rust|tokio,serde,axum,clap
typescript|react,express,zod,prisma
java|spring boot,jackson,hibernate
kotlin|ktor,exposed,koin
elixir|phoenix,ecto,oban
""")
}
GENERIC_LIBS = words(
    "common-logging retry-kit config-loader auth-middleware metrics-client http-toolkit "
    "toggle-kit test-fixtures"
)
CLUSTERS = table("""
prod cluster|the production kubernetes cluster|production
staging cluster|the pre-production cluster|staging
eu prod cluster|the production cluster in frankfurt|
legacy vm fleet|the old virtual machines|
""")
TOPICS = table("""
rate limiting|capping how many requests a client may send
idempotency keys|making retried requests safe to repeat
canary releases|rolling a change out to a few users first
schema migrations|changing database tables without downtime
connection pooling|reusing database connections
chaos engineering|breaking things on purpose to test resilience
sprint planning|the meeting where the next two weeks are planned
load testing|measuring how much traffic a system takes
distributed tracing|following one request across services
secret rotation|replacing credentials on a schedule
backfills|reprocessing old data after a fix
dead letter queues|where messages that keep failing end up
""")
PRACTICES = words(
    "trunk based development|small pull requests|feature flags|pair programming|"
    "conventional commits|dark mode|test driven development|blameless postmortems",
    "|",
)
FONTS = words("jetbrains mono|fira code|iosevka|cascadia code|hack", "|")
THEMES = words("gruvbox|nord|dracula|solarized dark|catppuccin|tokyo night", "|")
BROWSERS = words("firefox|chromium|arc|safari", "|")
# predicates whose new value replaces the old one (declared single-valued)
SINGLE_VALUED = tuple(
    words(
        "preferred_editor preferred_shell uses_terminal preferred_font preferred_theme "
        "preferred_browser deployed_on member_of reports_to learning"
    )
)
# files each service may have: name | what it is, before "the <service>"
SERVICE_FILES = table("""
deploy.sh|script that ships
config.yaml|settings of
requirements.txt|pinned packages of
""")
DOTFILES = table("""
~/.zshrc|zsh
~/.bashrc|bash
~/.config/fish/config.fish|fish
~/.config/nvim/init.lua|neovim
~/.vimrc|vim
~/.tmux.conf|tmux
~/.gitconfig|git
~/.kube/config|kubectl
""")
DOCS = table("""
docs/maintainers-guide.md|how to cut releases and triage issues
docs/review-checklist.md|what to check before approving a pull request
notes/work-notes.md|my running notes of the day
docs/oncall-handbook.md|what to do when the pager goes off
""")
# the schema's entity type of each kind of thing in the world
TYPES = {
    "person": "person",
    "tool": "command",
    "file": "file",
    "project": "project",
    "service": "project",
    "library": "project",
}


# --- how names are heard -------------------------------------------------------------

LETTERS = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        words(
            "a bee see dee e eff gee aitch eye jay kay el em en oh pee queue are ess tee you "
            "vee double-you ex why zee"
        ),
        strict=True,
    )
)
DIGITS = dict(enumerate(words("zero one two three four five six seven eight nine")))
ONSETS = set(
    words("bl br ch cl cr dr fl fr gl gr kn ph pl pr sc sh sk sl sm sn sp st sw th tr tw wh wr")
)
# Sound-alike spellings a recogniser produces for parts of words (pattern | sound).
SOUNDS = pairs(r"""
^py|pie_
ctl$|_cuddle
^kube(?!r)|cube_
gres|gress_
^post|post_
nginx|engine x
^graf|graph_
sql|_sequel
ph|f
^my|my_
form$|_form
ctx$|_context
ns$|_ens
x$|_ex
ck|k
^c|k
ue$|oo
ea|ee
tion$|shun
oo|u
er$|a
y$|ie
ai|ay
^ex|ecks
ff|f
z|s
qu|kw
""")
# Jargon and abbreviations developers say aloud, for entities that may be in a world.
JARGON = {
    name: said.split(",")
    for name, said in pairs("""
kubernetes|k eight s,kube,kates
terraform|tf,terra
postgres|the db,pg,postgres db
prod cluster|prod
staging cluster|stage
elasticsearch|elastic,e s
kubectl|kube control,kube c t l
prometheus|prom
typescript|ts
python|py
vscode|vs code
rabbitmq|rabbit
redis|the cache
neovim|n vim
ripgrep|rip grep
clickhouse|click house
grafana|graf
""")
}
_VOWELS = set("aeiouy")


def _spell(word: str) -> str:
    return " ".join(DIGITS[int(c)] if c.isdigit() else LETTERS.get(c, c) for c in word)


def _unpronounceable(word: str) -> bool:
    body = word[1:] if word.startswith("y") else word
    return len(word) <= 2 or not (_VOWELS & set(body))


def _syllable_split(word: str) -> str | None:
    # Split after a vowel, before a consonant that starts a syllable (one consonant
    # before a vowel, or a two-letter onset): terra|grunt. The middle-most split wins.
    cuts = [
        i
        for i in range(2, len(word) - 2)
        if word[i - 1] in _VOWELS
        and word[i] not in _VOWELS
        and (word[i + 1] in _VOWELS or word[i : i + 2] in ONSETS)
    ]
    if not cuts:
        return None
    i = min(cuts, key=lambda c: abs(2 * c - len(word)))
    return f"{word[:i]} {word[i:]}"


def _onset_split(word: str) -> str | None:
    # A leading consonant cluster English does not start a syllable with is said letter
    # by letter up to the last onset: htop "aitch top", pgcli "pee gee cli".
    cluster = re.match(r"[^aeiouy]+", word)
    if cluster is None or len(cluster[0]) < 2 or cluster[0][:2] in ONSETS:
        return None
    keep = 2 if cluster[0][-2:] in ONSETS else 1
    head = cluster[0][:-keep]
    return f"{_spell(head)} {word[len(head) :]}" if head else None


def _word_forms(word: str) -> list[str]:
    runs = re.findall(r"[a-z]+|[0-9]+", word)
    if len(runs) > 1:  # k9s: "kay nine ess"; iterm2: "iterm two"
        return [" ".join(_spell(r) if r.isdigit() or _unpronounceable(r) else r for r in runs)]
    if _unpronounceable(word):
        return [_spell(word)]
    forms = [f for f in (_onset_split(word), _syllable_split(word)) if f]
    every = word
    for pattern, sound in SOUNDS:
        changed = re.sub(pattern, sound, word, count=1).strip()
        if changed != word and len(changed.replace(" ", "")) >= 2:
            forms.append(changed)
            every = re.sub(pattern, sound, every, count=1).strip()
    forms.append(re.sub(" +", " ", every))  # every sound-alike at once: "cube cuddle"
    return forms


def spoken_forms(name: str) -> list[str]:
    """Return how a speech recogniser may write ``name``: letter names for short or
    unpronounceable words, sound-alike spellings, syllables split apart, separate words
    run together, one wrong letter. Never ``name`` itself."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    forms = [
        " ".join([*words[:i], form, *words[i + 1 :]])
        for i, word in enumerate(words)
        for form in _word_forms(word)
    ]
    if len(words) > 1:
        forms.append("".join(words))
    return list(dict.fromkeys(f for f in forms if f != " ".join(words)))
