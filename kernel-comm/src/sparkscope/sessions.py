"""The Spark Connect sessions this kernel uses: finding them, putting the cell's tag on them, and
naming them to the agent by the (session id, user id) pair the server sees.

pyspark keeps client tags per client *and per thread* (`SparkConnectClient.thread_local.tags`), so
everything here works on pyspark's `SparkConnectClient` objects and on the calling thread. pyspark
is never imported from here: the client class is patched when (and if) the notebook imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NamedTuple, Protocol

log = logging.getLogger("sparkscope")

CLIENT_MODULE = "pyspark.sql.connect.client.core"
SESSION_MODULE = "pyspark.sql.connect.session"


class SessionKey(NamedTuple):
    """What the agent matches a subscription on: both must equal what the server reported."""

    session_id: str
    user_id: str

    def to_json(self) -> dict[str, str]:
        out = {"sessionId": self.session_id}
        if self.user_id:  # proto3 JSON: the default (empty) is left out
            out["userId"] = self.user_id
        return out


class ConnectClient(Protocol):
    """The part of pyspark's `SparkConnectClient` used here (stubs in tests provide the same)."""

    _session_id: str
    _user_id: str | None

    def add_tag(self, tag: str) -> None: ...
    def remove_tag(self, tag: str) -> None: ...


def session_key(client: ConnectClient) -> SessionKey:
    # The server sees `user_context.user_id` only when pyspark sends one (it skips None and "").
    return SessionKey(str(client._session_id), str(client._user_id or ""))


def client_of(obj: Any) -> ConnectClient | None:
    """The Connect client of a Connect `SparkSession` or of a client itself; None for anything
    else (a classic SparkSession has no `client` with a session id)."""
    for candidate in (obj, getattr(obj, "_client", None)):
        if (
            candidate is not None
            and isinstance(getattr(candidate, "_session_id", None), str)
            and callable(getattr(candidate, "add_tag", None))
            and callable(getattr(candidate, "remove_tag", None))
        ):
            return candidate
    return None


def is_closed(client: ConnectClient) -> bool:
    return bool(getattr(client, "is_closed", False))


class OperationHandler:
    """A pyspark progress handler (`SparkConnectClient.register_progress_handler`, pyspark >= 4.0)
    that only records which operation ids each thread ran. pyspark calls it synchronously on the
    thread running the query, with done=True once per ExecutePlan."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink

    def __call__(self, **kw: Any) -> None:
        try:
            op_id = kw.get("operation_id")
            if kw.get("done") and op_id:
                self._sink(str(op_id))
        except Exception:  # never into the user's query
            log.debug("progress handler failed", exc_info=True)


class SessionTracker:
    """The Connect clients of this process and the tags sparkscope put on them.

    `on_new(key)` is called (on whatever thread created the client) for each newly seen session;
    `on_operation(operation_id)` on the thread that ran each ExecutePlan (pyspark >= 4.0).
    """

    def __init__(
        self,
        on_new: Callable[[SessionKey], None],
        on_operation: Callable[[str], None],
    ) -> None:
        self._on_new = on_new
        self._local = threading.local()
        self._handler = OperationHandler(on_operation)
        self._lock = threading.Lock()
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._finder: _ClientImportWatcher | None = None
        self._patched: tuple[type, Callable[..., None]] | None = None

    # -- discovery

    def install(self) -> None:
        """Hook client creation now if pyspark's Connect client is imported, else as soon as it
        is; and pick up the sessions that already exist."""
        module = sys.modules.get(CLIENT_MODULE)
        if module is not None:
            self._patch(module)
        else:
            self._finder = _ClientImportWatcher(self._patch)
            sys.meta_path.insert(0, self._finder)
        self.discover()

    def uninstall(self) -> None:
        if self._finder is not None:
            self._finder.detach()
            self._finder = None
        if self._patched is not None:
            cls, original = self._patched
            if getattr(cls.__init__, "__sparkscope_original__", None) is original:
                cls.__init__ = original  # type: ignore[method-assign]
            self._patched = None
        for client in list(self._clients):
            remove = getattr(client, "remove_progress_handler", None)
            if remove is not None:
                try:
                    remove(self._handler)
                except Exception:
                    log.debug("remove_progress_handler failed", exc_info=True)

    def _patch(self, module: ModuleType) -> None:
        """Wrap `SparkConnectClient.__init__` so every client (builder.create/getOrCreate,
        newSession, cloneSession, SparkSession(...) alike) is tracked when it is made."""
        cls = getattr(module, "SparkConnectClient", None)
        if cls is None or self._patched is not None:
            return
        original = wrap_init(cls, self.track, "tracking a new Spark Connect client")
        self._patched = (cls, original)

    def discover(self) -> None:
        """Track the process's default and this thread's active Connect session, if any
        (sessions made before sparkscope was loaded)."""
        module = sys.modules.get(SESSION_MODULE)
        if module is None:
            return
        cls = getattr(module, "SparkSession", None)
        candidates = [getattr(cls, "_default_session", None)]
        try:
            candidates.append(cls.getActiveSession())  # type: ignore[union-attr]
        except Exception:
            log.debug("getActiveSession failed", exc_info=True)
        for session in candidates:
            client = client_of(session) if session is not None else None
            if client is not None:
                self.track(client)

    def track(self, obj: Any) -> bool:
        """Follow a Connect session or client; returns True when it was new. A new one gets the
        tags sparkscope holds on the calling thread (a session created inside a cell gets the
        cell's tag before its first query)."""
        client = client_of(obj)
        if client is None:
            return False
        with self._lock:
            new = client not in self._clients
            if new:
                self._clients.add(client)
        if new:
            register = getattr(client, "register_progress_handler", None)
            if register is not None:
                try:
                    register(self._handler)
                except Exception:
                    log.debug("register_progress_handler failed", exc_info=True)
            for tag in self.active_tags():
                _add_tag(client, tag)
            self._on_new(session_key(client))
        return new

    def clients(self) -> list[ConnectClient]:
        with self._lock:
            return [c for c in self._clients if not is_closed(c)]

    def keys(self) -> list[SessionKey]:
        return sorted({session_key(c) for c in self.clients()})

    def drop_closed(self) -> list[SessionKey]:
        """Forget stopped sessions; returns their keys (to unsubscribe)."""
        with self._lock:
            closed = [c for c in self._clients if is_closed(c)]
            for c in closed:
                self._clients.discard(c)
            still_open = {session_key(c) for c in self._clients}
        return sorted({session_key(c) for c in closed} - still_open)

    # -- tags (always for the calling thread: that is where pyspark keeps them)

    def active_tags(self) -> list[str]:
        """The tags sparkscope holds on the calling thread (innermost last)."""
        return list(getattr(self._local, "tags", ()))

    def push(self, tag: str) -> None:
        """Put `tag` on every tracked session for the calling thread, and on sessions created on
        this thread until `pop(tag)`."""
        self._local.__dict__.setdefault("tags", []).append(tag)
        for client in self.clients():
            _add_tag(client, tag)

    def pop(self, tag: str) -> None:
        tags = getattr(self._local, "tags", [])
        if tag in tags:
            tags.remove(tag)
        if tag in tags:  # still held by an outer block on this thread
            return
        for client in self.clients():
            try:
                client.remove_tag(tag)
            except Exception:
                log.debug("removeTag failed", exc_info=True)

    @contextmanager
    def tagged(self, tag: str) -> Iterator[str]:
        """`tag` on every tracked session for this thread while the block runs."""
        self.push(tag)
        try:
            yield tag
        finally:
            self.pop(tag)


def wrap_init(cls: type, after: Callable[[Any], Any], what: str) -> Callable[..., None]:
    """Make `cls(...)` call `after(instance)` once constructed (its failures only logged, as
    `what`); returns the original `__init__`, unwrapping a previous load's wrapper."""
    original = cls.__init__
    if hasattr(original, "__sparkscope_original__"):
        original = original.__sparkscope_original__

    def __init__(obj: Any, *args: Any, **kwargs: Any) -> None:
        original(obj, *args, **kwargs)
        try:
            after(obj)
        except Exception:
            log.debug("%s failed", what, exc_info=True)

    __init__.__sparkscope_original__ = original  # type: ignore[attr-defined]
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = original.__doc__
    cls.__init__ = __init__  # type: ignore[misc]
    return original


def _add_tag(client: ConnectClient, tag: str) -> None:
    try:
        client.add_tag(tag)
    except Exception:
        log.debug("addTag failed", exc_info=True)


class _ClientImportWatcher(importlib.abc.MetaPathFinder):
    """Calls `callback(module)` right after one of `modules` (by default pyspark's Connect client
    module) is executed, so sessions created in the same cell that imports pyspark are tracked
    (and tagged) too."""

    def __init__(
        self, callback: Callable[[ModuleType], None], modules: Sequence[str] = (CLIENT_MODULE,)
    ) -> None:
        self._callback = callback
        self._modules = tuple(modules)

    def detach(self) -> None:
        """Stop watching (idempotent)."""
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(fullname, path, target)
            except Exception:
                log.debug("finding %s failed", fullname, exc_info=True)
                return None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(loader, self._callback)
        return spec


class _NotifyingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # importlib checks `spec.loader` is the loader it used; give pyspark's module its real one
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        try:
            self._callback(module)
        except Exception:
            log.debug("patching the Spark Connect client failed", exc_info=True)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, … for tracebacks
        return getattr(self._loader, name)
