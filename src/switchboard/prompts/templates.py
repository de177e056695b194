"""Prompt templates: checked when saved, rendered in a sandbox with bounds (docs/prompts.md).

A prompt's messages are Jinja2 templates written by tenant users, so they are untrusted code:

- They run in Jinja2's ``ImmutableSandboxedEnvironment``: no attribute starting with ``_``
  (``{{ ''.__class__ }}`` is refused), no method that mutates a value, no access to Python
  internals. Undefined variables are errors (``StrictUndefined``), never silently empty.
- Every loop iteration and every call into template code (a macro, a recursive loop, a block)
  draws from one budget per render (``max_loop_iterations``), so nested loops and recursion
  cannot spin; ``range`` is that budget's too. Such calls nest at most ``MAX_CALL_DEPTH`` deep.
- A render has a deadline (``max_render_seconds``), checked at every step the sandbox sees
  (each loop iteration, call, filter, operator and printed value): costly work within the
  other bounds stops there. A render still running after ``INLINE_SECONDS`` leaves the event
  loop: :func:`render_async` starts it again in a worker thread (renders are pure), so a slow
  template delays its own caller, not every request.
- Values cannot grow past the output bound: repetition (``*``), ``**``, ``+``, ``%`` and ``~``
  are checked before they compute, calls and filters whose integer arguments or estimated
  results exceed it are refused, and the output is counted as it is generated and stopped at
  ``max_rendered_chars`` (the whole rendered prompt). Values are weighed by content (the text
  they print, :func:`_weight`), so many references to one large string cannot be printed,
  joined, mapped or formatted into text far past the bound.

:func:`compile_prompt` lists a prompt's problems at save time (syntax errors with their line,
variables used but not declared in the variables schema, statements that load other templates,
an invalid schema; :func:`check_prompt` runs it off the event loop for large templates, whose
compiling takes seconds); :func:`render` produces the chat messages (:func:`render_async` on the
request path); :func:`validate_variables` checks values against the schema (JSON Schema, Draft
2020-12, references within the schema only: apis/schemas.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import BlockReference, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

from switchboard.apis import schemas
from switchboard.prompts import bounds
from switchboard.prompts.bounds import Bounds
from switchboard.prompts.errors import RenderBusy, RenderError
from switchboard.stores.protocols import PromptVersion

ROLES = ("system", "developer", "user", "assistant")
# Calls into template code (macros, recursive loops, blocks) nested deeper than this are refused
# (well before Python's own recursion limit).
MAX_CALL_DEPTH = 64
# A typical render takes tens of microseconds on the event loop; one still running after this
# long is started again in a worker thread (render_async).
INLINE_SECONDS = 0.005
# A template longer than this that is not compiled yet is compiled in the worker thread.
INLINE_COMPILE_CHARS = 20_000
# Worker threads for slow renders: few, as they share the interpreter lock with the event loop.
RENDER_THREADS = 2
# Slow renders handed to those threads at once (running or waiting for one): each may run for
# its deadline, so beyond this a burst of them would wait for minutes; one more is refused at
# once (503 prompt_render_busy) and the caller tries again.
MAX_WAITING_RENDERS = 16
# The most problems or invalid variables reported at once.
MAX_PROBLEMS = 20
MAX_PATH_CHARS = 200  # a variable's path in an error: the names in it are the caller's keys


class _Undefined(StrictUndefined):
    """Strict (printing, iterating or reading from a variable that was not given fails), except
    that it is false: ``{% if optional %}`` works for a declared variable left out."""

    __slots__ = ()

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


class _TooLarge(SecurityError):
    pass


class _Offload(Exception):
    """An inline render ran past :data:`INLINE_SECONDS`: finish it in a worker thread."""


class _Budget:
    __slots__ = ("chars", "deadline", "depth", "iterations", "stop_at")

    def __init__(self, bounds: Bounds, inline: bool) -> None:
        self.iterations = bounds.max_loop_iterations
        self.chars = bounds.max_rendered_chars
        self.depth = 0
        now = time.monotonic()
        self.deadline = now + bounds.max_render_seconds
        # The first moment something must be done: hand over to a thread, or fail.
        self.stop_at = min(self.deadline, now + INLINE_SECONDS) if inline else self.deadline

    def tick(self) -> None:
        """Every step the sandbox sees: past the deadline the render fails."""
        if time.monotonic() > self.stop_at:
            if time.monotonic() > self.deadline:
                raise _TooLarge(f"the render took longer than {bounds.current.max_render_seconds:g} s "
                                "(prompts.max_render_seconds)")
            raise _Offload

    def step(self) -> None:
        """A loop iteration or a call into template code."""
        self.iterations -= 1
        if self.iterations < 0:
            raise _TooLarge(f"loops and macro calls ran more than {bounds.current.max_loop_iterations} "
                            "iterations (prompts.max_loop_iterations)")
        self.tick()


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("prompt_budget", default=None)


def _tick() -> None:
    budget = _current.get()
    if budget is not None:
        budget.tick()


def _limit() -> int:
    budget = _current.get()
    return budget.chars if budget is not None else bounds.current.max_rendered_chars


_CONTAINERS = (list, tuple, dict, set, frozenset)
_OTHER_WEIGHT = 64  # what str() of any other object is counted as (a generator, the loop)


def _weight(value: Any) -> int:
    """About the characters ``str(value)`` has, by content: a list holding one large string n
    times weighs n times that string, not n. The walk stops once past what is left of the
    bound, so it costs at most that many steps (every item counts at least one character)."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, _CONTAINERS) and not isinstance(value, Namespace):
        return _scalar_weight(value)
    limit = _limit()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 4  # quotes and a separator, as repr() prints them
        elif isinstance(item, dict):
            total += 2
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, _CONTAINERS):
            total += 2
            stack += item
        elif isinstance(item, Namespace):  # printed with its attributes
            total += 14
            stack.append(item._Namespace__attrs)
        else:
            total += _scalar_weight(item) + 2
        if total > limit:
            return total
    return total


def _scalar_weight(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2  # decimal digits and a sign
    if isinstance(value, float):
        return 24
    return _OTHER_WEIGHT


def _check_size(size: int) -> None:
    if size > _limit():
        raise _TooLarge(f"a value of about {size} characters exceeds what is left of the output "
                        f"bound ({bounds.current.max_rendered_chars} characters)")


def _bounded_stream(items: Iterator[Any]) -> Iterator[Any]:
    """A lazy filter's result (map, select, ...): its items together stay within the bound, so
    ``big|map('upper')|list`` stops before it builds every item."""
    total = 0
    for item in items:
        _tick()
        total += _weight(item)
        _check_size(total)
        yield item


def _bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``for`` loop iterates through this: one iteration budget per render."""
    budget = _current.get()
    for item in iterable:
        if budget is not None:
            budget.step()
        yield item


def _range(*args: int) -> Iterator[int]:
    rng = range(*args)
    if len(rng) > bounds.current.max_loop_iterations:
        raise _TooLarge(f"range of {len(rng)} exceeds the bound of {bounds.current.max_loop_iterations}")
    return _bounded_iter(rng)


_PERCENT_FIELD = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.S)
_DIGITS = re.compile(r"\d+")
_formatter = string.Formatter()


def _number(digits: str) -> int:
    if len(digits) > 9:
        raise _TooLarge(f"a width of {digits[:12]} exceeds the bound of {_limit()}")
    return int(digits)


def _percent_weight(spec: str, values: Any) -> int:
    """About the length of ``spec % values``: its text, each field's width and precision
    (summed, so many fields of an allowed width are counted together) and the value it prints."""
    positional = iter(values) if isinstance(values, tuple) else iter((values,))
    total = len(spec)
    for key, width, precision, kind in _PERCENT_FIELD.findall(spec):
        if kind == "%":
            continue
        for part in (width, precision):
            if part == "*":
                taken = next(positional, 0)
                total += abs(taken) if isinstance(taken, int) else 0
            elif part:
                total += _number(part)
        if key and isinstance(values, Mapping):
            total += _weight(values.get(key))
        elif not key:
            total += _weight(next(positional, None))
    return total


def _brace_weight(spec: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    """About the length of ``spec.format(*args, **kwargs)``, counted like :func:`_percent_weight`;
    a width given by an argument (``{0:{1}}``) counts as the largest integer argument."""
    total = len(spec)
    auto = 0
    widest = max((abs(v) for v in (*args, *kwargs.values()) if isinstance(v, int)), default=0)
    try:
        fields = list(_formatter.parse(spec))
    except ValueError:
        return total  # the call itself fails with the reason
    for _, field, format_spec, _ in fields:
        if field is None:
            continue
        head = re.split(r"[.\[]", field, maxsplit=1)[0]
        if head == "":
            head, auto = str(auto), auto + 1
        # str.format's own rule: decimal digits of any script (U+0665) index the arguments; other
        # digits ("²", which isdigit() takes and int() refuses) are a name, looked up as one.
        value = (args[int(head)] if int(head) < len(args) else None) if head.isdecimal() else kwargs.get(head)
        total += _weight(value) + sum(_number(d) for d in _DIGITS.findall(format_spec or ""))
        if format_spec and "{" in format_spec:
            total += widest
    return total


def _check_format(name: str, spec: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``format``: the ``format`` filter (``spec % args``) or ``str.format``/``format_map``."""
    if not isinstance(spec, str):
        return
    if name == "format_map":
        mapping = args[0] if args and isinstance(args[0], Mapping) else {}
        _check_size(_brace_weight(spec, (), mapping))
        return
    _check_size(max(_percent_weight(spec, dict(kwargs) or tuple(args)), _brace_weight(spec, args, kwargs)))


# Filters that turn their value into text: a container is weighed before it is.
_TEXT_FILTERS = frozenset(["capitalize", "center", "e", "escape", "forceescape", "indent", "lower",
                           "pprint", "safe", "string", "striptags", "title", "tojson", "trim", "truncate",
                           "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"])


def _check_args(name: str, target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call or filter before it allocates more than the bound."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > _limit():
            raise _TooLarge(f"{name}: argument {arg} exceeds the bound of {_limit()}")
    if name == "replace" and len(args) >= 2:
        size = _weight(target)
        _check_size(size + (size + 1) * _weight(args[1]))
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        lines = target.count("\n") + 1 if isinstance(target, str) else 1
        _check_size(_weight(target) + lines * (_weight(width) if isinstance(width, str) else int(width or 0)))
    elif name == "join":
        _check_join(target, args, kwargs)
    elif name == "expandtabs" and isinstance(target, str | bytes):
        # Each tab becomes up to ``tabsize`` spaces: 1,000 tabs at 999,999 are a gigabyte.
        size = args[0] if args else kwargs.get("tabsize", 8)
        tabs = target.count("\t") if isinstance(target, str) else target.count(b"\t")
        if isinstance(size, int):
            _check_size(len(target) + tabs * max(size, 0))
    elif name == "translate" and isinstance(target, str) and args:
        _check_translate(target, args[0])
    elif name in ("format", "format_map"):
        _check_format(name, target, args, kwargs)
    elif name in _TEXT_FILTERS and not isinstance(target, str):
        _check_size(_weight(target))


def _check_translate(text: str, table: Any) -> None:
    """``text.translate(table)``: every character may become the table's longest replacement."""
    if isinstance(table, Mapping):
        values: Iterable[Any] = table.values()
    elif isinstance(table, Sequence) and not isinstance(table, str | bytes):
        values = table
    else:
        return  # a string's items are single characters; anything else fails the call itself
    longest = max((len(v) for v in values if isinstance(v, str)), default=1)
    _check_size(len(text) * max(longest, 1))


def _check_join(target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``sep.join(items)`` or ``items|join(sep)`` (no separator: an empty one)."""
    if isinstance(target, str):
        sep, items = target, args[0] if args else ()
    else:
        sep, items = (args[0] if args else kwargs.get("d", "")), target
    if isinstance(items, Sequence | Set | Mapping) and not isinstance(items, str):
        total = _weight(sep) * len(items)
        for item in items:
            total += _weight(item)
            _check_size(total)


_MAX_POWER_BITS = 4096


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, keep_trailing_newline=True,
                         finalize=_printed)
        self.code_generator_class = _Generator
        # No lipsum (it generates text of any size); range is the bounded one.
        self.globals = {"range": _range, "dict": dict, "namespace": self.globals["namespace"]}
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters["_sb_iter"] = _bounded_iter

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_sb_iter", [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            if isinstance(left, int) and not isinstance(left, bool):
                left, right = right, left
            if isinstance(right, int) and isinstance(left, str | list | tuple):
                _check_size(_weight(left) * max(right, 0))
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0
                    and max(abs(left), 2).bit_length() * right > _MAX_POWER_BITS):
                raise _TooLarge(f"{left} ** {right} is too large")
        elif operator == "+":
            _check_size(_weight(left) + _weight(right))
        elif operator == "%" and isinstance(left, str):
            _check_size(_percent_weight(left, right))
        result = super().call_binop(context, operator, left, right)
        _check_size(_weight(result))
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current.get()
        if budget is not None:
            if isinstance(__obj, Macro | LoopContext | BlockReference):
                budget.step()  # template code: recursion counts like loop iterations
                if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
                    args = (_bounded_iter(args[0]), *args[1:])
            else:
                budget.tick()
        name = getattr(__obj, "__name__", "")
        # The sandbox wraps str.format in a function of its own (``__wrapped__``).
        target = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        _check_args(name, target, args, kwargs)
        if budget is None:
            result = super().call(__context, __obj, *args, **kwargs)
        else:
            budget.depth += 1
            if budget.depth > MAX_CALL_DEPTH:
                raise _TooLarge(f"calls nested more than {MAX_CALL_DEPTH} deep")
            try:
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                budget.depth -= 1
        _check_size(_weight(result))
        return result

    def concat(self, parts: Iterable[Any]) -> str:
        """The ``~`` operator, bounded."""
        _tick()
        out: list[str] = []
        total = 0
        for part in parts:
            if not isinstance(part, str):
                _check_size(total + _weight(part))  # before str() builds it
            text = str(part)
            total += len(text)
            _check_size(total)
            out.append(text)
        return "".join(out)


def _printed(value: Any) -> Any:
    """Every ``{{ value }}``: a container is weighed before it is printed (str() builds it)."""
    _tick()
    if not isinstance(value, str):
        _check_size(_weight(value))
    return value


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        # Context- and environment-passing filters take those first; the value follows.
        rest = [a for a in args if not isinstance(a, ImmutableSandboxedEnvironment)
                and type(a).__name__ not in ("Context", "EvalContext")]
        if rest:
            _check_args(name, rest[0], rest[1:], kwargs)
        result = function(*args, **kwargs)
        if isinstance(result, Iterator):
            return _bounded_stream(result)
        _check_size(_weight(result))
        return result

    for marker in ("jinja_pass_arg",):
        if hasattr(function, marker):
            setattr(bounded, marker, getattr(function, marker))
    bounded.__name__ = name
    return bounded


class _Generator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        # A constant folded at compile time is written as its repr, so a float that is not
        # finite ('inf'|float, 1e999, [1e999] in a set) is written as ``inf`` or ``nan``: names
        # the compiled module then needs (every render of such a template was a NameError).
        self.writeline("inf, nan = float('inf'), float('nan')")
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_env = _Sandbox()


# -- save time ----------------------------------------------------------------------------------


def _message_text(message: Mapping[str, Any]) -> str | None:
    content = message.get("content")
    return content if isinstance(content, str) else None


def check_schema(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON schema (Draft 2020-12, references within it only);
    None when it is."""
    return schemas.check_schema(schema)


# Statements that load another template: a prompt's templates have no loader, so they would
# fail at every render.
_LOADING = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from ... import",
            nodes.Extends: "extends"}


def compile_prompt(messages: Sequence[Mapping[str, Any]], variables_schema: Mapping[str, Any]) -> list[str]:
    """The problems of a prompt, each naming where (``messages[i]`` and the line, or
    ``variables``); empty when it can be saved."""
    problems: list[str] = []
    declared: set[str] = set()
    invalid = check_schema(variables_schema)
    if invalid is not None:
        problems.append(f"variables: {invalid}")
    else:
        kind = variables_schema.get("type")
        if kind is not None and kind != "object":
            problems.append("variables: the schema must describe an object (\"type\": \"object\")")
        properties = variables_schema.get("properties")
        if isinstance(properties, Mapping):
            declared = set(properties)
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            problems.append(f"{where}: must be an object with role and content")
            continue
        if message.get("role") not in ROLES:
            problems.append(f"{where}.role: must be one of {', '.join(ROLES)}")
        text = _message_text(message)
        if text is None:
            problems.append(f"{where}.content: must be a string (a template)")
            continue
        try:
            tree = _env.parse(text)
            _env.compile(tree)
            used = meta.find_undeclared_variables(tree) - set(_env.globals)
        except TemplateSyntaxError as exc:
            problems.append(f"{where} line {exc.lineno}: {exc.message}")
            continue
        except TemplateError as exc:  # pragma: no cover - parse catches what compile would
            problems.append(f"{where}: {exc}")
            continue
        except RecursionError:  # the parser and compiler recurse into nested expressions
            problems.append(f"{where}: expressions or blocks are nested too deeply")
            continue
        for kind_of, statement in _LOADING.items():
            for node in tree.find_all(kind_of):
                problems.append(f"{where} line {node.lineno}: {{% {statement} %}} is not supported: "
                                "a prompt's templates cannot load other templates (use a macro)")
        for variable in sorted(used - declared):
            problems.append(
                f"{where} line {_line_of(tree, variable)}: variable '{variable}' is not declared "
                "in the variables schema's properties"
            )
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems[:MAX_PROBLEMS]


def _line_of(tree: nodes.Template, variable: str) -> int:
    for name in tree.find_all(nodes.Name):
        if name.name == variable and name.ctx == "load":
            return int(name.lineno)
    return 1


# -- request time -------------------------------------------------------------------------------


_templates: dict[str, Any] = {}
_MAX_TEMPLATES = 4096


def _template(text: str) -> Any:
    """Compiled templates by text (compiling is the slow part; versions are immutable)."""
    template = _templates.get(text)
    if template is None:
        if len(_templates) >= _MAX_TEMPLATES:
            _templates.pop(next(iter(_templates)), None)
        template = _templates[text] = _env.from_string(text)
    return template


def _failure(index: int, exc: BaseException) -> RenderError:
    if isinstance(exc, SecurityError):
        return RenderError(f"messages[{index}]: refused: {exc}", param="prompt")
    if isinstance(exc, TemplateError):
        return RenderError(f"messages[{index}]: {exc.message or exc}", param="prompt")
    if isinstance(exc, KeyError):  # str.format's field (or a mapping's key) that was not given
        key = str(exc.args[0] if exc.args else "")[:100]
        return RenderError(f"messages[{index}]: nothing named {key!r} was given (a format string's "
                           "field or a key looked up)", param="prompt")
    if isinstance(exc, IndexError):  # a format string's {5} with fewer arguments, or an item
        return RenderError(f"messages[{index}]: an index past the end (a format string's field "
                           "numbers more arguments than were given, or an item looked up)", param="prompt")
    if isinstance(exc, ValueError | TypeError):  # their text says what went wrong
        return RenderError(f"messages[{index}]: {str(exc)[:300]}", param="prompt")
    return RenderError(f"messages[{index}]: {type(exc).__name__}: {str(exc)[:300]}", param="prompt")


# AttributeError, AssertionError: a filter given a value it cannot take (``'a'|xmlattr``, not a
# mapping; ``truncate(1)``, shorter than its ellipsis).
_FAILURES = (SecurityError, TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
             AttributeError, AssertionError, RecursionError, MemoryError)


def render(version: PromptVersion, variables: Mapping[str, Any], *,
           inline: bool = False) -> list[dict[str, Any]]:
    """The chat messages ``version`` makes of ``variables``; :class:`RenderError` (400) when a
    template fails or a bound is reached. ``inline``: :func:`render_async`'s first attempt,
    given up (``_Offload``) once it runs past :data:`INLINE_SECONDS`, or at once when a large
    template is not compiled yet. Compiling (once per template text) is not part of the render's
    time: the deadline starts after it."""
    compiled: list[Any] = []
    for index, message in enumerate(version.messages):
        text = _message_text(message)
        if text is None:
            raise RenderError(f"prompt '{version.name}' version {version.version}: "
                              f"messages[{index}] has no template", param="prompt")
        if inline and len(text) > INLINE_COMPILE_CHARS and text not in _templates:
            raise _Offload
        try:
            compiled.append(_template(text))
        except _FAILURES as exc:
            raise _failure(index, exc) from None
    budget = _Budget(bounds.current, inline)
    token = _current.set(budget)
    out: list[dict[str, Any]] = []
    try:
        for index, (message, template) in enumerate(zip(version.messages, compiled, strict=True)):
            parts: list[str] = []
            try:
                for chunk in template.generate(dict(variables)):
                    budget.tick()
                    budget.chars -= len(chunk)
                    if budget.chars < 0:
                        raise _TooLarge(
                            f"the rendered prompt exceeds {bounds.current.max_rendered_chars} characters"
                        )
                    parts.append(chunk)
            except _Offload:
                raise
            except _FAILURES as exc:
                raise _failure(index, exc) from None
            rendered = {k: v for k, v in message.items() if k != "content"}
            rendered["content"] = "".join(parts)
            out.append(rendered)
    finally:
        _current.reset(token)
    return out


_workers: ThreadPoolExecutor | None = None
_waiting = 0  # renders handed to the pool and not finished there (see MAX_WAITING_RENDERS)
_waiting_lock = threading.Lock()


def _done_waiting() -> None:
    global _waiting
    with _waiting_lock:
        _waiting -= 1


def _in_thread(version: PromptVersion, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Counted until the thread is done, not until its caller stops waiting (a caller that went
    # away leaves the render running to its deadline).
    try:
        return render(version, variables)
    finally:
        _done_waiting()


def _pool() -> ThreadPoolExecutor:
    global _workers
    if _workers is None:
        _workers = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="prompt-render")
    return _workers


async def render_async(version: PromptVersion, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`render` for the request path: on the event loop while it is quick (almost every
    render), else started again in a worker thread, where it runs until its deadline while the
    loop serves other requests."""
    global _waiting
    try:
        return render(version, variables, inline=True)
    except _Offload:
        pass
    with _waiting_lock:
        if _waiting >= MAX_WAITING_RENDERS:
            raise RenderBusy(f"{MAX_WAITING_RENDERS} slow prompt renders are under way already; try again "
                             "shortly", headers={"retry-after": "1"})
        _waiting += 1
    try:
        future = asyncio.get_running_loop().run_in_executor(_pool(), _in_thread, version, variables)
    except BaseException:
        _done_waiting()
        raise
    return await future


async def check_prompt(messages: Sequence[Mapping[str, Any]],
                       variables_schema: Mapping[str, Any]) -> list[str]:
    """:func:`compile_prompt` for a request handler: large templates (compiling 200,000
    characters takes seconds) are checked in a worker thread, off the event loop."""
    size = sum(len(text) for m in messages if isinstance(m, Mapping) and (text := _message_text(m)))
    if size <= INLINE_COMPILE_CHARS:
        return compile_prompt(messages, variables_schema)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), compile_prompt, messages, variables_schema)


def validate_variables(schema: Mapping[str, Any], variables: Any) -> list[tuple[str, str]]:
    """(field path, message) for each way ``variables`` fails ``schema`` (JSON Schema, Draft
    2020-12); empty when valid. A path is dotted (``items.0.name``); ``""`` is the whole."""
    found: list[tuple[str, str]] = []
    ordered = sorted(schemas.errors(schema, variables, formats=True),
                     key=lambda e: [str(p) for p in e.absolute_path])
    for error in ordered:
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            for name in error.validator_value if isinstance(error.validator_value, list) else ():
                if name not in error.instance:
                    found.append((f"{path}.{name}" if path else str(name), "required"))
        elif names := schemas.unexpected(error):
            found.extend((f"{path}.{name}" if path else name, "not allowed: no such property")
                         for name in names)
        else:
            found.append((path, error.message[:300]))
        if len(found) >= MAX_PROBLEMS:
            break
    return [(path[:MAX_PATH_CHARS], why) for path, why in found[:MAX_PROBLEMS]]
