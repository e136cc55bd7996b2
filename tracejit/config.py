"""Configuration flags (SPEC §5).

One explicit object, ``config``, holds every flag. Values come from the
defaults below, then from ``TRACEJIT_FLAGS="floatX=float32,device=cuda"``
(and ``TRACEJIT_CACHE_DIR``), then from assignment or ``config.change()``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

MODES = ("FAST_RUN", "FAST_COMPILE", "DEBUG_MODE")
DEVICES = ("cpu", "cuda")
FLOAT_DTYPES = ("float32", "float64")


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        value = str(value)
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}; got {value!r}")
        return value
    return check


def _names(value: Any) -> tuple[str, ...]:
    """A set of rewrite names: 'a:b', 'a,b' or an iterable."""
    if isinstance(value, str):
        parts = value.replace(",", ":").split(":")
    else:
        parts = list(value)
    return tuple(sorted({p.strip() for p in parts if p and p.strip()}))


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean; got {value!r}")
    return bool(value)


def _byte_count(value: Any) -> int:
    count = int(value)
    if count < 0:
        raise ValueError(f"expected a number of bytes >= 0, got {value!r}")
    return count


def _default_cache_dir(environ: Any = os.environ) -> str:
    env = environ.get("TRACEJIT_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tracejit")


# name -> (default factory, validator, help)
_FLAGS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], str]] = {
    "floatX": (lambda: "float64", _choice(*FLOAT_DTYPES),
               "dtype of T.scalar/vector/... and of Python floats given to float inputs"),
    "mode": (lambda: "FAST_RUN", _choice(*MODES), "default compilation mode"),
    "device": (lambda: "cpu", _choice(*DEVICES), "where compiled functions run"),
    "cache_dir": (_default_cache_dir, lambda v: os.path.expanduser(str(v)),
                  "directory of the on-disk cache of compiled modules"),
    "optimizer_excluding": (lambda: (), _names, "names of rewrites to skip"),
    "cxx": (lambda: "cc", str, "C compiler command; empty disables the C backend"),
    "profile": (lambda: False, _bool, "collect time per node for compiled functions"),
    "openmp": (lambda: True, _bool, "parallelize large elementwise loops with OpenMP"),
    "background_compile": (lambda: True, _bool,
                           "while a module's first build runs, call the graph on the NumPy "
                           "interpreter instead of waiting for the C compiler"),
    "buffer_pool_bytes": (lambda: 1 << 30, _byte_count,
                          "bytes of freed large output buffers kept for reuse by later calls "
                          "(0: every output is fresh memory)"),
}


class Config:
    """The flags of SPEC §5 as attributes, validated on assignment."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        values = {name: default() for name, (default, _, _) in _FLAGS.items()}
        values["cache_dir"] = _default_cache_dir(environ)
        object.__setattr__(self, "_values", values)
        self._apply_env(environ)

    def _apply_env(self, environ: Any) -> None:
        flags = environ.get("TRACEJIT_FLAGS", "")
        for item in flags.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ValueError(f"TRACEJIT_FLAGS: expected name=value, got {item!r}")
            name, value = item.split("=", 1)
            # Inside TRACEJIT_FLAGS, lists of rewrite names use ':'.
            setattr(self, name.strip(), value.strip())

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"tracejit.config has no flag {name!r}; "
                                 f"flags are: {', '.join(_FLAGS)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _FLAGS:
            raise AttributeError(f"tracejit.config has no flag {name!r}; "
                                 f"flags are: {', '.join(_FLAGS)}")
        validator = _FLAGS[name][1]
        try:
            self._values[name] = validator(value)
        except ValueError as exc:
            raise ValueError(f"config.{name}: {exc}") from None

    @contextlib.contextmanager
    def change(self, **flags: Any) -> Iterator["Config"]:
        """Set flags for the duration of a ``with`` block, then restore them."""
        saved = dict(self._values)
        try:
            for name, value in flags.items():
                setattr(self, name, value)
            yield self
        finally:
            self._values.clear()
            self._values.update(saved)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        body = "\n".join(f"  {k} = {v!r}" for k, v in self._values.items())
        return f"tracejit.config(\n{body}\n)"


config = Config()
