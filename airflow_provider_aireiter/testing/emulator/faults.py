"""Fault injection: scripted sequences and random rates, per endpoint.

Endpoints are ``"submit"``, ``"query"``, ``"balance"``, ``"media"`` and
``"callback"``. For each request (or, for ``"callback"``, each task
completion that has a ``callback_url``) the injector first pops the next item
of that endpoint's script (``None`` means "behave normally"), and only when
the script is exhausted consults the random rules.

Fault kinds and their options:

=========================  ===========================  ======================================
kind                       endpoints                    effect (options)
=========================  ===========================  ======================================
``http_429``               submit, query, balance,      HTTP 429 + ``Retry-After`` header
                           media                        (``retry_after``, default 1); not processed
``http_500/502/503``       submit, query, balance,      that HTTP status, JSON error body;
                           media                        not processed
``busy_429``               submit, query, balance       HTTP 200, body ``statusCode`` 429
                                                        ``busy`` (``message``); not processed
``slow``                   submit, query, balance,      sleeps ``seconds`` (default 10, real
                           media                        time), then processes and answers
``reset_after_processing`` submit, query, balance,      processes the request, then resets the
                           media                        TCP connection (SO_LINGER 0), no answer
``malformed_json``         submit, query, balance       processes the request, answers HTTP 200
                                                        JSON cut in the middle
``html``                   submit, query, balance,      HTTP 200 HTML marketing page; not
                           media                        processed
``task_failure``           submit                       the next task created ends ``failed``
                                                        (``message``)
``truncated_download``     media                        full ``Content-Length``, only a part
                                                        (``fraction``, default 0.5) sent
``callback_drop``          callback                     the callback is not delivered
``callback_duplicate``     callback                     the callback is delivered twice
``callback_delay``         callback                     delivered ``seconds`` (default 5, real
                                                        time) late
=========================  ===========================  ======================================
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENDPOINTS = ("submit", "query", "balance", "media", "callback")

_API = frozenset({"submit", "query", "balance"})
_SERVED = frozenset({"submit", "query", "balance", "media"})

#: Fault kind -> endpoints it may be used on.
KIND_ENDPOINTS: dict[str, frozenset[str]] = {
    "http_429": _SERVED,
    "http_500": _SERVED,
    "http_502": _SERVED,
    "http_503": _SERVED,
    "busy_429": _API,
    "slow": _SERVED,
    "reset_after_processing": _SERVED,
    "malformed_json": _API,
    "html": _SERVED,
    "task_failure": frozenset({"submit"}),
    "truncated_download": frozenset({"media"}),
    "callback_drop": frozenset({"callback"}),
    "callback_duplicate": frozenset({"callback"}),
    "callback_delay": frozenset({"callback"}),
}

#: Fault kind -> option name -> default value.
KIND_OPTIONS: dict[str, dict[str, Any]] = {
    "http_429": {"retry_after": 1},
    "busy_429": {"message": "busy"},
    "slow": {"seconds": 10.0},
    "task_failure": {"message": "content rejected by safety review"},
    "truncated_download": {"fraction": 0.5},
    "callback_delay": {"seconds": 5.0},
}


@dataclass(frozen=True, init=False)
class Fault:
    """One fault to inject, with its options.

    :param kind: a fault kind, e.g. ``"http_429"`` or ``"slow"``.
    :param options: kind-specific options, e.g. ``retry_after=3`` for
        ``http_429``, ``seconds=30`` for ``slow`` or ``callback_delay``,
        ``message="..."`` for ``task_failure`` and ``busy_429``,
        ``fraction=0.25`` for ``truncated_download``.

    Usable in scripts in place of a plain kind string::

        emu.faults.script("query", [Fault("http_429", retry_after=2), None])
    """

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, kind: str, **options: Any) -> None:
        if kind not in KIND_ENDPOINTS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KIND_ENDPOINTS)}")
        allowed = KIND_OPTIONS.get(kind, {})
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"fault {kind!r} takes no option(s) {', '.join(unknown)}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "options", {**allowed, **options})

    def option(self, name: str) -> Any:
        """Return an option value (or its default)."""
        return self.options[name]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description."""
        return {"kind": self.kind, **self.options}


FaultSpec = str | Fault | Mapping[str, Any] | None


def as_fault(spec: FaultSpec) -> Fault | None:
    """Turn a kind string, a ``{"kind": ..., **options}`` mapping or a :class:`Fault` into a fault."""
    if spec is None or isinstance(spec, Fault):
        return spec
    if isinstance(spec, str):
        return Fault(spec)
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str):
        options = {key: value for key, value in spec.items() if key != "kind"}
        return Fault(spec["kind"], **options)
    raise ValueError(f"not a fault: {spec!r}")


def _check_endpoint(endpoint: str, fault: Fault | None) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
    if fault is not None and endpoint not in KIND_ENDPOINTS[fault.kind]:
        allowed = ", ".join(sorted(KIND_ENDPOINTS[fault.kind]))
        raise ValueError(f"fault {fault.kind!r} cannot be used on {endpoint!r} (only {allowed})")


@dataclass
class _RateRule:
    fault: Fault
    probability: float
    rng: random.Random


class FaultInjector:
    """Holds the scripted and random faults of one emulator (thread-safe).

    Reach it as ``emu.faults``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Fault | None]] = {}
        self._rates: dict[str, list[_RateRule]] = {}
        self._injected: list[dict[str, Any]] = []

    def script(self, endpoint: str, faults: Iterable[FaultSpec]) -> None:
        """Make the next requests to ``endpoint`` get ``faults`` in order.

        Replaces any earlier script for that endpoint. ``None`` items mean
        "behave normally" for that request.
        """
        items = [as_fault(spec) for spec in faults]
        for item in items:
            _check_endpoint(endpoint, item)
        _check_endpoint(endpoint, None)
        with self._lock:
            self._scripts[endpoint] = deque(items)

    def rate(
        self,
        endpoint: str,
        kind: str | Fault,
        probability: float,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        """Inject ``kind`` on ``endpoint`` with ``probability`` (0..1) per request.

        A later call for the same kind and endpoint replaces the earlier one;
        a probability of 0 removes it.
        """
        fault = kind if isinstance(kind, Fault) else Fault(kind, **options)
        _check_endpoint(endpoint, fault)
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        with self._lock:
            rules = [r for r in self._rates.get(endpoint, []) if r.fault.kind != fault.kind]
            if probability > 0:
                rules.append(_RateRule(fault, probability, random.Random(seed)))
            self._rates[endpoint] = rules

    def clear(self, endpoint: str | None = None) -> None:
        """Remove scripts and rates (for one endpoint, or all) and the history."""
        with self._lock:
            if endpoint is None:
                self._scripts.clear()
                self._rates.clear()
                self._injected.clear()
            else:
                self._scripts.pop(endpoint, None)
                self._rates.pop(endpoint, None)

    def remaining(self, endpoint: str) -> int:
        """Number of scripted items not yet consumed for ``endpoint``."""
        with self._lock:
            return len(self._scripts.get(endpoint, ()))

    def draw(self, endpoint: str) -> Fault | None:
        """Return the fault for the next ``endpoint`` request (``None`` = normal)."""
        with self._lock:
            fault: Fault | None = None
            script = self._scripts.get(endpoint)
            if script:
                fault = script.popleft()
            else:
                for rule in self._rates.get(endpoint, ()):
                    if rule.rng.random() < rule.probability:
                        fault = rule.fault
                        break
            if fault is not None:
                self._injected.append({"endpoint": endpoint, "kind": fault.kind, "time": time.time()})
            return fault

    def injected(self) -> list[dict[str, Any]]:
        """Return the faults injected so far (``endpoint``, ``kind``, ``time``)."""
        with self._lock:
            return [dict(entry) for entry in self._injected]

    def describe(self) -> dict[str, Any]:
        """Return the configured scripts and rates as JSON-friendly data."""
        with self._lock:
            return {
                "scripts": {name: [f.to_dict() if f else None for f in items] for name, items in self._scripts.items()},
                "rates": {
                    name: [{"probability": r.probability, **r.fault.to_dict()} for r in rules]
                    for name, rules in self._rates.items()
                },
            }

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply one admin-style spec.

        ``{"endpoint": "submit", "script": ["http_503", None]}`` or
        ``{"endpoint": "query", "kind": "http_500", "rate": 0.2, "seed": 1,
        "options": {...}}``.
        """
        endpoint = spec.get("endpoint")
        if not isinstance(endpoint, str):
            raise ValueError("'endpoint' is required")
        if "script" in spec:
            script = spec["script"]
            if not isinstance(script, Sequence) or isinstance(script, (str, bytes)):
                raise ValueError("'script' must be a list")
            self.script(endpoint, script)
            return
        kind = spec.get("kind")
        rate = spec.get("rate")
        if not isinstance(kind, str) or isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError("give either 'script' or both 'kind' and 'rate'")
        options = spec.get("options") or {}
        if not isinstance(options, Mapping):
            raise ValueError("'options' must be an object")
        seed = spec.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise ValueError("'seed' must be an integer")
        self.rate(endpoint, kind, float(rate), seed=seed, **dict(options))

    def configure_many(self, specs: Mapping[str, Any]) -> None:
        """Apply the constructor form ``{endpoint: [script...] | {"kind", "rate", ...}}``."""
        for endpoint, value in specs.items():
            if isinstance(value, Mapping):
                self.configure({"endpoint": endpoint, **value})
            else:
                self.configure({"endpoint": endpoint, "script": list(value)})
