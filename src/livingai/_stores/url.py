"""open_store(url): a store from one URL, for configuration files, the CLI and the web UI.

Parsing is pure; the store's own constructor does the rest (a missing extra raises
MissingExtraError naming it). Every error is a ConfigError that shows the URL with its
password masked and lists the accepted forms.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .._core.errors import ConfigError
from .._core.store import CheckpointStore
from .._core.urls import mask_url

ACCEPTED = """accepted store URLs:
  sqlite:///relative/path.db     sqlite:////absolute/path.db     sqlite:///:memory:
      options: ?synchronous=NORMAL|FULL
  memory://
  redis://[user:password@]host[:port][/db][?prefix=livingai&ttl_seconds=N&max_connections=N]
      (rediss:// for TLS; &wait_replicas=N&wait_timeout_ms=N to wait for replicas;
      other options go to redis-py, e.g. socket_timeout=5)
  redis+cluster://[user:password@]host[:port][?prefix=livingai&...]
      a Redis Cluster, from any one of its nodes (rediss+cluster:// for TLS; the
      options of redis://)
  postgresql://[user[:password]@]host[:port]/database[?schema=livingai&max_size=N]
      (postgres:// too; other options go to libpq, e.g. sslmode=require)
  tiered:<hot store URL>|<cold store URL>
      e.g. tiered:redis://127.0.0.1:6379/0?prefix=app|postgresql://app@db/agents?schema=app"""


def _fail(url: str, problem: str) -> ConfigError:
    return ConfigError(f"bad store URL {mask_url(url)!r}: {problem}\n{ACCEPTED}")


def _options(url: str, query: str, known: Parsers) -> dict[str, object]:
    """Our own options out of the query (each parsed), in a dict."""
    options: dict[str, object] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            continue
        if name in options:
            raise _fail(url, f"option {name!r} is given twice")
        try:
            options[name] = known[name](value)
        except ValueError:
            raise _fail(url, f"option {name}={value!r} is not valid") from None
    return options


def _without(query: str, names: Parsers) -> str:
    """The query without our own options: the rest is the driver's."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, value) for name, value in pairs if name not in names])


def _text(value: str) -> str:
    if not value:
        raise ValueError("empty")
    return value


Parsers = dict[str, Callable[[str], object]]  # our own options of a scheme, each parsed
_SQLITE: Parsers = {"synchronous": _text}
_REDIS: Parsers = {
    "prefix": _text,
    "ttl_seconds": int,
    "max_connections": int,
    "wait_replicas": int,
    "wait_timeout_ms": int,
}
_POSTGRES: Parsers = {"schema": _text, "max_size": int}


def open_store(url: str) -> CheckpointStore:
    """The store a URL names (see ACCEPTED); nothing is connected until first use."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"a store URL must be a non-empty string; got {url!r}\n{ACCEPTED}")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme.replace("+", "_").isidentifier():
        raise _fail(url, "it has no scheme (a file path? write sqlite:///path.db)")
    if scheme == "tiered":
        return _tiered(url, rest)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _fail(url, str(exc)) from None
    if not rest.startswith("//"):
        raise _fail(url, f"expected {scheme}://...")
    if parts.fragment:
        raise _fail(url, "a store URL has no #fragment")
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise _fail(url, "memory:// takes nothing after the scheme")
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        return _sqlite(url, parts.netloc, parts.path, parts.query)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from .redis import RedisStore

        options = _options(url, parts.query, _REDIS)
        cluster = scheme.endswith("+cluster")
        if cluster and parts.path not in ("", "/"):
            raise _fail(url, "a Redis Cluster has no database number: nothing after host:port")
        plain = parts._replace(
            scheme=scheme.removesuffix("+cluster"), query=_without(parts.query, _REDIS)
        ).geturl()
        return RedisStore(plain, cluster=cluster, **options)  # type: ignore[arg-type]
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        if not parts.hostname and "host=" not in parts.query:
            raise _fail(url, "no host")
        options = _options(url, parts.query, _POSTGRES)
        plain = parts._replace(query=_without(parts.query, _POSTGRES)).geturl()
        return PostgresStore(plain, **options)  # type: ignore[arg-type]
    raise _fail(url, f"unknown scheme {scheme!r}")


def _sqlite(url: str, netloc: str, path: str, query: str) -> CheckpointStore:
    from .sqlite import SQLiteStore

    if netloc:
        raise _fail(url, "a SQLite URL names no host: sqlite:///relative.db or sqlite:////abs.db")
    path = unquote(path[1:])  # sqlite:///x.db -> x.db, sqlite:////abs/x.db -> /abs/x.db
    if not path or path.endswith("/"):
        raise _fail(url, "no database file")
    unknown = [n for n, _ in parse_qsl(query, keep_blank_values=True) if n not in _SQLITE]
    if unknown:
        raise _fail(url, f"unknown option {unknown[0]!r}")
    return SQLiteStore(path, **_options(url, query, _SQLITE))  # type: ignore[arg-type]


def _tiered(url: str, rest: str) -> CheckpointStore:
    from .tiered import TieredStore

    hot_url, bar, cold_url = rest.partition("|")
    if not bar or not hot_url or not cold_url:
        raise _fail(url, "a tiered URL is tiered:<hot store URL>|<cold store URL>")
    if "|" in cold_url or hot_url.startswith("tiered:") or cold_url.startswith("tiered:"):
        raise _fail(url, "a tiered store is made of two plain stores")
    return TieredStore(open_store(hot_url), open_store(cold_url))
