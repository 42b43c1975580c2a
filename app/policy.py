"""Who is calling and what they may do: the one module every handler and API function asks.

Shaped like Argilla's per-resource policies: roles are data (`ACTIONS` maps each action to the
role it needs), identities come from one function (`Policy.identify`), and a refusal is one
named exception (`Refused`) whose message names the role it needs. Hiding a tab is a courtesy
to the user; this module is the protection.

Modes:
- local: bound to a loopback address, no `--auth`, not `--public`, not on a Space: the one
  person at the keyboard holds every role, as on any laptop tool.
- public: `--public`, `$SPACE_ID`, a non-loopback address, or `--auth`: rights come only from
  the role lists; everyone else is an anonymous visitor.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections import defaultdict, deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum

from annotate.checks import MAX_CAPTION_CHARS

ADMINS_ENV = "HUMANVLM_ADMINS"
REVIEWERS_ENV = "HUMANVLM_REVIEWERS"
LOCAL_USER = "local"  # the name the laptop user signs with when no name is typed


class Role(IntEnum):
    VISITOR = 0
    REVIEWER = 1
    ADMIN = 2

    def __str__(self) -> str:
        return self.name.lower()


# Every action a handler can take, and the least role that may take it.
ACTIONS: dict[str, Role] = {
    "caption": Role.VISITOR, "chat": Role.VISITOR,
    "send_to_review": Role.REVIEWER,  # visitors too with --visitors-can-send (rate-limited)
    "review": Role.REVIEWER,  # claim, edit, approve, reject, skip, undo, own and queue counts
    "export": Role.ADMIN, "import": Role.ADMIN, "train": Role.ADMIN, "cancel": Role.ADMIN,
    "versions": Role.ADMIN, "use_version": Role.ADMIN, "compare": Role.ADMIN,
    "reassign": Role.ADMIN, "labelstudio": Role.ADMIN, "settings": Role.ADMIN, "audit": Role.ADMIN,
    "adjudicate": Role.ADMIN,  # overlap items whose reviewers disagree; gold scores
    "manage_versions": Role.ADMIN,  # rename, merge or delete a trained version (the Models tab)
}


class Refused(Exception):
    """The caller's role does not allow the action; nothing was changed."""

    user_facing = True

    def __init__(self, message: str, action: str = "", needs: Role | None = None):
        super().__init__(message)
        self.action, self.needs = action, needs


class TooLarge(Refused):
    """An input over one of the limits (prompt length, caption length, rate)."""


@dataclass
class Limits:
    """Abuse limits; every one is a `serve` flag (see app/serve.py)."""

    max_file_mb: int = 20  # uploads above this get HTTP 413 from the upload route itself
    max_prompt_chars: int = 2_000  # prompt or chat message
    max_new_tokens: int = 1_024  # cap on what a caller may ask for
    max_chat_turns: int = 12  # earlier turns are dropped from the context
    max_caption_chars: int = MAX_CAPTION_CHARS  # the queue's own limit (annotate/checks.py)
    queue_size: int = 64  # events waiting in Gradio's queue; more are refused with "queue full"
    sends_per_minute: int = 6  # "Send to review" by one visitor
    retention_hours: float = 24.0  # temporary uploads and export zips older than this are deleted


@dataclass(frozen=True)
class Identity:
    name: str | None  # None: an anonymous visitor
    role: Role
    source: str  # "local" | "login" | "huggingface" | "anonymous"
    address: str | None = None  # the client's address, for rate limits of anonymous callers

    @property
    def who(self) -> str:
        return self.name or f"anonymous ({self.address or 'unknown address'})"

    def key(self) -> str:
        return self.name or f"@{self.address}"


@dataclass
class AccessConfig:
    mode: str = "local"  # "local" | "public"
    admins: frozenset[str] = frozenset()  # "*" in a set: every signed-in user
    reviewers: frozenset[str] = frozenset()
    auth_enabled: bool = False  # --auth: every logged-in user is at least a reviewer
    oauth: bool = False  # sign-in with Hugging Face (only on a real Space)
    visitors_can_send: bool = False
    bases: tuple[str, ...] = ()  # extra training bases an admin may pick (--bases)
    limits: Limits = field(default_factory=Limits)

    @property
    def public(self) -> bool:
        return self.mode == "public"


def parse_names(spec: str | None) -> frozenset[str]:
    return frozenset(n.strip() for n in (spec or "").split(",") if n.strip())


def is_loopback(host: str | None) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def on_real_space(env=os.environ) -> bool:
    """Gradio's own test for a Space, plus the OAuth app it needs (set by `hf_oauth: true`)."""
    return env.get("SYSTEM") == "spaces" and bool(env.get("SPACE_ID")) and bool(env.get("OAUTH_CLIENT_ID"))


def resolve_access(host: str | None = "127.0.0.1", public: bool = False, auth: bool = False,
                   admins: str | None = None, reviewers: str | None = None,
                   visitors_can_send: bool | None = None, bases: tuple[str, ...] = (),
                   limits: Limits | None = None, env=os.environ) -> AccessConfig:
    """The access configuration from flags and environment (flags win over variables)."""
    on_space = bool(env.get("SPACE_ID"))
    mode = "public" if public or on_space or auth or not is_loopback(host) else "local"
    admin_names = parse_names(admins if admins is not None else env.get(ADMINS_ENV))
    if not admin_names and on_space and env.get("SPACE_AUTHOR_NAME"):
        admin_names = frozenset({env["SPACE_AUTHOR_NAME"]})  # the Space's owner
    return AccessConfig(
        mode=mode, admins=admin_names,
        reviewers=parse_names(reviewers if reviewers is not None else env.get(REVIEWERS_ENV)),
        auth_enabled=auth, oauth=on_real_space(env),
        visitors_can_send=(mode == "local") if visitors_can_send is None else visitors_can_send,
        bases=tuple(bases), limits=limits or Limits())


class Policy:
    """Answers "who is this" and "may they do that"; shared by every handler (thread-safe)."""

    def __init__(self, config: AccessConfig | None = None, clock=time.monotonic):
        self.config = config or AccessConfig()
        self._sends = RateLimiter(self.config.limits.sends_per_minute, 60.0, clock)

    # ---- who ------------------------------------------------------------------------------

    def identify(self, request=None, profile=None) -> Identity:
        """From, in order: Hugging Face sign-in (`gr.OAuthProfile`), Gradio's log-in, nobody."""
        address = _address(request)
        if self.config.mode == "local":
            return Identity(LOCAL_USER, Role.ADMIN, "local", address)
        if profile is not None and self.config.oauth:
            name = getattr(profile, "username", None) or profile.get("preferred_username")
            if name:
                return Identity(name, self.role_of(name, "huggingface"), "huggingface", address)
        name = getattr(request, "username", None) if request is not None else None
        if name:
            return Identity(name, self.role_of(name, "login"), "login", address)
        return Identity(None, Role.VISITOR, "anonymous", address)

    def role_of(self, name: str, source: str) -> Role:
        c = self.config
        if name in c.admins or "*" in c.admins:
            return Role.ADMIN
        if name in c.reviewers or "*" in c.reviewers or (c.auth_enabled and source == "login"):
            return Role.REVIEWER
        return Role.VISITOR

    # ---- may they -------------------------------------------------------------------------

    def needs(self, action: str) -> Role:
        if action == "send_to_review" and self.config.visitors_can_send:
            return Role.VISITOR
        return ACTIONS[action]

    def allows(self, identity: Identity, action: str) -> bool:
        return identity.role >= self.needs(action)

    def require(self, identity: Identity, action: str) -> Identity:
        """Return the identity when it may take the action; raise `Refused` otherwise."""
        needed = self.needs(action)
        if identity.role >= needed:
            if action == "send_to_review" and identity.role < Role.REVIEWER:
                self._sends.take(identity.key(), "sends to the review queue")
            return identity
        raise Refused(f"{_LABELS.get(action, action)} needs the {needed} role; {self.how_to_get(needed, identity)}",
                      action, needed)

    def how_to_get(self, role: Role, identity: Identity) -> str:
        c = self.config
        if role is Role.ADMIN and not c.admins:
            return (f"no admin is configured: start the app with --admins NAME "
                    f"(or set ${ADMINS_ENV}; on a Space, a variable in its settings)")
        if identity.name is None and (c.oauth or c.auth_enabled):
            return "sign in" + (" with Hugging Face" if c.oauth else "") + " with an account that has it"
        return f"ask an admin to add {identity.name or 'you'} to --{'admins' if role is Role.ADMIN else 'reviewers'}"

    def visible_tabs(self, identity: Identity) -> dict[str, bool]:
        """Which tabs to show this caller (a convenience: the handlers enforce the same rules)."""
        return {"review": self.allows(identity, "review"), "data": self.allows(identity, "review"),
                "export": self.allows(identity, "export"),
                "train": self.allows(identity, "train"), "models": self.allows(identity, "use_version"),
                "audit": self.allows(identity, "audit")}

    # ---- how much -------------------------------------------------------------------------

    def check_text(self, text: str | None, what: str = "prompt") -> str:
        """Refuse over-long prompts and messages at once, before any tokenizer sees them."""
        text = text or ""
        limit = self.config.limits.max_prompt_chars
        if len(text) > limit:
            raise TooLarge(f"the {what} is {len(text):,} characters; the limit is {limit:,} "
                           "(--max-prompt-chars)", what)
        return text

    def check_caption(self, caption: str | None) -> str:
        caption = caption or ""
        limit = self.config.limits.max_caption_chars
        if len(caption) > limit:
            raise TooLarge(f"the caption is {len(caption):,} characters; the limit is {limit:,}", "caption")
        return caption

    def cap_tokens(self, max_new_tokens) -> int:
        return max(1, min(int(max_new_tokens or 1), self.config.limits.max_new_tokens))

    def trim_turns(self, turns: list) -> list:
        """Keep the first turn (it carries the image) and the most recent ones."""
        keep = self.config.limits.max_chat_turns
        return turns if len(turns) <= keep else [turns[0], *turns[-(keep - 1):]]


_LABELS = {"send_to_review": "Sending to the review queue", "review": "Reviewing", "export": "Exporting",
           "import": "Importing", "train": "Training", "cancel": "Cancelling a training job",
           "versions": "Listing model versions", "use_version": "Changing the served model",
           "compare": "Comparing versions", "reassign": "Returning items to the queue",
           "labelstudio": "Label Studio sync", "settings": "Changing settings", "audit": "Reading the audit log",
           "adjudicate": "Adjudicating reviews", "manage_versions": "Renaming, merging or deleting model versions",
           "caption": "Captioning", "chat": "Chatting"}


class RateLimiter:
    """At most `count` events per `window` seconds per key (a sliding window)."""

    def __init__(self, count: int, window: float, clock=time.monotonic):
        self.count, self.window, self._clock = count, window, clock
        self._events: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str, what: str) -> None:
        now = self._clock()
        with self._lock:
            events = self._events[key]
            while events and now - events[0] > self.window:
                events.popleft()
            if len(events) >= self.count:
                wait = self.window - (now - events[0])
                raise TooLarge(f"too many {what}: at most {self.count} a minute; try again in {wait:.0f} s", what)
            events.append(now)


# ---- log-in back-off ----------------------------------------------------------------------

CLIENT_ADDRESS: ContextVar[str | None] = ContextVar("client_address", default=None)


class ClientAddressMiddleware:
    """Pure ASGI middleware: makes the client's address visible to Gradio's log-in check."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and scope.get("client"):
            CLIENT_ADDRESS.set(scope["client"][0])
        await self.app(scope, receive, send)


class LoginGuard:
    """Gradio's `auth` callable with an exponential back-off per user name and per address.

    After `free` failures in a row, each further attempt waits 2**(n - free) seconds (capped):
    attempts inside the wait are refused without looking at the password.
    """

    def __init__(self, users: list[tuple[str, str]], free: int = 3, cap_s: float = 900, clock=time.monotonic):
        import hmac

        self._compare = hmac.compare_digest
        self._users = dict(users)
        self.free, self.cap_s, self._clock = free, cap_s, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, locked until)
        self._lock = threading.Lock()

    def __call__(self, username: str, password: str) -> bool:
        keys = [f"user:{username}", f"addr:{CLIENT_ADDRESS.get() or 'unknown'}"]
        now = self._clock()
        with self._lock:
            if any(self._failures.get(k, (0, 0.0))[1] > now for k in keys):
                return False
        expected = self._users.get(username)
        ok = expected is not None and self._compare(password.encode(), expected.encode())
        with self._lock:
            for k in keys:
                if ok:
                    self._failures.pop(k, None)
                    continue
                count = self._failures.get(k, (0, 0.0))[0] + 1
                wait = 0.0 if count < self.free else min(2.0 ** (count - self.free), self.cap_s)
                self._failures[k] = (count, now + wait)
        return ok

    def locked_for(self, username: str, address: str = "unknown") -> float:
        now = self._clock()
        return max(0.0, *(self._failures.get(k, (0, 0.0))[1] - now
                          for k in (f"user:{username}", f"addr:{address}")))


def _address(request) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def env_flag(name: str) -> bool | None:
    """An on/off environment variable: None when unset."""
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in ("1", "true", "yes", "on")
