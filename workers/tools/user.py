"""User tools: Python functions or Tool classes named by ``RUNNER_TOOLS`` or an entry point.

``RUNNER_TOOLS=package.module:object,...`` and the ``runner.tools`` entry-point group
name objects that are one of

- a :class:`~workers.tools.base.Tool` instance or subclass (instantiated without
  arguments),
- a function, made a tool by :func:`tool` (or taken as it is: its name, its docstring
  and its signature), whose parameters are validated with pydantic from its type hints;
  a parameter annotated :class:`~workers.tools.base.ToolContext` receives the call's
  context (workspace, ``effect_id``, stop request) and is not shown to the model,
- a list or tuple of those.

A worker imports them once at start (a name that does not import stops it with one
line); its work horses inherit them.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from runner.errors import BadInput, ToolError
from workers.tools.base import Tool, ToolContext, ToolResult, tool_class
from workers.tools.output import fit, to_text

ENTRY_POINT_GROUP = "runner.tools"
# What providers accept as a function name; ``__`` is kept for MCP tools (server__tool).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class FunctionTool(Tool):
    """A Python function as a tool: arguments validated by a pydantic model of its signature."""

    function: ClassVar[Callable[..., Any]]
    arguments: ClassVar[type[BaseModel]]
    context_param: ClassVar[str | None] = None

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            parsed = self.arguments.model_validate(args)
        except ValidationError as exc:
            raise ToolError(_invalid(exc)) from None
        kwargs = {field: getattr(parsed, field) for field in type(parsed).model_fields}
        if self.context_param:
            kwargs[self.context_param] = ctx
        value = type(self).function(**kwargs)
        if isinstance(value, ToolResult):
            return ToolResult(fit(value.content, ctx.output_bytes), value.interrupted)
        return ToolResult(to_text(value, ctx.output_bytes))


def _invalid(exc: ValidationError) -> str:
    """A validation error in one line: the first problem and where."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"bad arguments: {where}: {first['msg']}{more}"


def _signature_model(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], str | None]:
    """A pydantic model of ``fn``'s parameters, and the name of its context parameter."""
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    context = None
    for param in inspect.signature(fn).parameters.values():
        hint = hints.get(param.name, Any)
        if hint is ToolContext:
            context = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise BadInput(f"tool {name}: *args and **kwargs are not supported")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, default)
    config = ConfigDict(extra="forbid")
    model = create_model(f"{name}_arguments", __config__=config, **fields)
    return model, context


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def function_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    approval: bool = False,
) -> Tool:
    """``fn`` as a tool; its name and docstring unless given."""
    tool_name = name or fn.__name__
    check_name(tool_name)
    model, context = _signature_model(fn, tool_name)
    cls = tool_class(
        FunctionTool,
        tool_name,
        description or inspect.getdoc(fn) or tool_name,
        _schema(model),
        idempotent,
        approval,
        function=staticmethod(fn),
        arguments=model,
        context_param=context,
    )
    return cls()


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    approval: bool = False,
) -> Any:
    """Decorator: make a function a tool (``@tool`` or ``@tool(idempotent=True, ...)``)."""

    def make(f: Callable[..., Any]) -> Tool:
        return function_tool(
            f, name=name, description=description, idempotent=idempotent, approval=approval
        )

    return make(fn) if fn is not None else make


def check_name(name: str) -> None:
    """BadInput unless ``name`` may name a user tool."""
    if not TOOL_NAME.fullmatch(name) or "__" in name:
        raise BadInput(
            f"not a tool name: {name[:70]!r} (1-64 letters, digits, _ or -; "
            "'__' is kept for MCP tools)"
        )


def as_tools(obj: Any, where: str) -> list[Tool]:
    """The tools ``obj`` stands for (see the module's docstring); BadInput otherwise."""
    if isinstance(obj, Tool):
        check_name(obj.name)
        return [obj]
    if isinstance(obj, type) and issubclass(obj, Tool):
        return as_tools(obj(), where)
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in as_tools(item, where)]
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return [function_tool(obj)]
    raise BadInput(f"{where} is a {type(obj).__name__}, not a tool, a function or a list of them")


def _import(spec: str) -> Any:
    """The object ``package.module:attr.path`` names; BadInput naming what failed."""
    if not TOOL_SPEC.fullmatch(spec):
        raise BadInput(f"RUNNER_TOOLS: {spec[:80]!r} is not package.module:object")
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise BadInput(f"RUNNER_TOOLS: cannot import {module_name}: {exc}") from None
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise BadInput(f"RUNNER_TOOLS: {module_name} has no {attr_path}") from None
    return obj


def load(specs: Iterable[str], group: str = ENTRY_POINT_GROUP) -> list[Tool]:
    """The tools ``RUNNER_TOOLS`` names, then those of the entry-point group."""
    found = [t for spec in specs for t in as_tools(_import(spec), spec)]
    for point in entry_points(group=group):
        where = f"entry point {point.name} ({point.value})"
        try:
            obj = point.load()
        except Exception as exc:
            raise BadInput(f"{where} does not load: {exc}") from None
        found += as_tools(obj, where)
    return found
