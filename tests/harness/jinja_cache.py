"""One compiled-template cache for every Copier render of the session.

Copier builds a new Jinja environment for each render and compiles every
template file, path and question default again: about 40% of a ``copier
update`` here goes to compiling the same sources.  The suite renders the same
template hundreds of times, so it keeps the compiled code, as Jinja's own
bytecode cache does across processes: keyed by the source and by every
environment setting the compiler reads, so a change of delimiters, filters or
extensions compiles anew.  What Copier renders is unchanged.
"""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

import jinja2

_compile = jinja2.Environment.compile
_cache: dict[tuple[Any, ...], CodeType] = {}


def _settings(env: jinja2.Environment) -> tuple[Any, ...]:
    """What the compiler's output depends on, besides the source."""
    return (
        type(env),
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        env.optimized,
        env.finalize is not None,
        tuple(sorted(env.extensions)),
        tuple(sorted(env.filters)),
        tuple(sorted(env.tests)),
        env.code_generator_class,
        env.concat.__name__ if hasattr(env.concat, "__name__") else env.concat,
        env.is_async,
    )


@functools.wraps(_compile)
def _cached_compile(
    self: jinja2.Environment,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> Any:
    if raw or not isinstance(source, str):
        return _compile(self, source, name, filename, raw, defer_init)
    key = (source, name, defer_init, _settings(self))
    code = _cache.get(key)
    if code is None:
        code = _cache[key] = _compile(self, source, name, filename, raw, defer_init)
    return code


def install() -> None:
    """Cache compiled templates for the rest of this process."""
    jinja2.Environment.compile = _cached_compile  # type: ignore[method-assign,assignment]
