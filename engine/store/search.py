"""The gallery's search language: a grammar (parsed with lark), the tree it gives, the problems a
person should be told about, and the SQL condition the gallery query applies.

    cat                    the path (with the added folder's own name) contains "cat", or the image
                           has a positive tag "cat"
    tag:cat  suggested:cat split:train  path:holiday/2023
    a b   a AND b          both
    a OR b   a | b         either
    -x   NOT x             not x (any term, field or group): -tag:cat, -path:raw, -(a OR b)
    ( … )                  grouping; quote values with spaces: tag:"red car"

Words and values are matched without regard to case; OR binds looser than AND.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lark import Lark, Token, Transformer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from sqlalchemy import and_, case, exists, func, literal, not_, or_, select, true
from sqlalchemy.sql import ColumnElement, Select

from engine.errors import UserError
from engine.store.schema import SPLITS, Image, Suggestion, Tag, TagClass

FIELDS = ("tag", "suggested", "split", "path")

SYNTAX = (   # (example, meaning): the shortcut sheet and the search box's tooltip show these
    ("cat", "the path or the folder's name contains it, or a positive tag cat"),
    ("tag:cat", "has the positive tag cat"),
    ("suggested:cat", "has a pending suggestion cat"),
    ("split:train", "in the split train (val, test, unassigned)"),
    ("path:holiday/2023", "the folder's name and the path contain it"),
    ("a b   a AND b", "both"),
    ("a OR b   a | b", "either"),
    ("-tag:cat   NOT x", "not: any term, field or group"),
    ("(a OR b) -c", "grouping"),
    ('tag:"red car"', "quote values with spaces"),
)

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr ((_OR | _PIPE) and_expr)*
?and_expr: unary (_AND? unary)*
?unary: _NOT unary -> negation
      | NEG unary  -> negation
      | atom
?atom: "(" or_expr ")"
     | FIELD value -> field
     | value       -> word
?value: WORD | STRING
_OR: "OR"
_PIPE: "|"
_AND: "AND"
_NOT: "NOT"
NEG: "-"
FIELD.2: /[A-Za-z_]+:/
STRING: /"[^"]*"/
WORD: /[^\s()":|\-][^\s()"|]*/
%ignore /\s+/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=False)


class SearchError(UserError):
    """The search text could not be understood; `column` (1-based) where, when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Term:
    field: str | None          # None: a bare word
    value: str
    column: int = 0


@dataclass(frozen=True)
class Not:
    node: object


@dataclass(frozen=True)
class AllOf:
    nodes: tuple


@dataclass(frozen=True)
class AnyOf:
    nodes: tuple


Node = Term | Not | AllOf | AnyOf


def _text(token: Token) -> str:
    value = str(token)
    return value[1:-1] if value.startswith('"') else value


class _Build(Transformer):
    def or_expr(self, items):
        return AnyOf(tuple(items))

    def and_expr(self, items):
        return AllOf(tuple(items))

    def negation(self, items):
        return Not(items[-1])

    def field(self, items):
        key, value = items
        return Term(str(key)[:-1].lower(), _text(value), key.column or 0)

    def word(self, items):
        return Term(None, _text(items[0]), items[0].column or 0)


def parse_search(text: str) -> Node | None:
    """The tree of a search, None for an empty one; raises `SearchError` saying what is wrong."""
    if not text.strip():
        return None
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _explain(text, exc) from None
    node = _Build().transform(tree)
    for term in _terms(node):
        if term.field is not None and term.field not in FIELDS:
            raise SearchError(f"Unknown field {term.field + ':'!r} (use tag:, suggested:, split:"
                              " or path:; quote a word with a colon: \"a:b\").", term.column)
        if term.field is None and term.value in ("OR", "AND", "NOT"):
            raise SearchError(f"{term.value} at column {term.column} needs a term on each side.",
                              term.column)
        if term.field is not None and not term.value.strip():
            raise SearchError(f"{term.field}: needs a value, e.g. {term.field}:cat.", term.column)
    return node


def _explain(text: str, exc: UnexpectedInput) -> SearchError:
    column = getattr(exc, "column", None)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            return SearchError(f"A quote at column {column} is not closed.", column)
        if char == ":":
            return SearchError(f"A ':' at column {column} needs a field name before it, e.g. "
                               "tag:cat.", column)
        return SearchError(f"Unexpected {char!r} at column {column}.", column)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken)
                                          and exc.token.type == "$END"):
        if text.rstrip().endswith(":"):
            return SearchError(f"{text.rstrip().split()[-1]} needs a value, e.g. tag:cat.", None)
        if text.count("(") > text.count(")"):
            return SearchError("A '(' is not closed.", None)
        return SearchError("The search ends too early: OR, NOT, '-' or a field needs something "
                           "after it.", None)
    if isinstance(exc, UnexpectedToken):
        token = str(exc.token)
        if token == ")":
            return SearchError(f"A ')' at column {column} has no '(' before it.", column)
        if exc.token.type in ("_OR", "_PIPE", "_AND"):
            return SearchError(f"{token} at column {column} needs a term on each side.", column)
        if token == "(" or exc.token.type in ("WORD", "STRING"):
            return SearchError(f"Unexpected {token!r} at column {column}.", column)
        return SearchError(f"Unexpected {token!r} at column {column}.", column)
    return SearchError(str(exc), column)


def _terms(node: Node) -> Iterable[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Not):
        yield from _terms(node.node)
    else:
        for child in node.nodes:
            yield from _terms(child)


def search_problem(text: str, class_names: Iterable[str]) -> str | None:
    """What is wrong with a search (syntax, unknown field, split or class), or None."""
    try:
        node = parse_search(text)
    except SearchError as exc:
        return str(exc)
    if node is None:
        return None
    names = {name.lower() for name in class_names}
    for term in _terms(node):
        if term.field in ("tag", "suggested") and term.value.lower() not in names:
            return f"No class is named {term.value!r} ({term.field}:{term.value})."
        if term.field == "split" and term.value.lower() not in SPLITS:
            return f"Unknown split {term.value!r}: use {', '.join(SPLITS)}."
    return None


# -------------------------------------------------------------------------------------------------
# SQL

IMAGES = Image.__table__
TAGS = Tag.__table__
CLASSES = TagClass.__table__
SUGGESTIONS = Suggestion.__table__


def search_condition(node: Node | None, folder_names: Mapping[int, str],
                     pending: Callable[[], Select]) -> ColumnElement:
    """The condition on `images` for a parsed search. `folder_names`: root id -> the added
    folder's own name (so `path:` matches it); `pending()`: a select of (image_id) rows of pending
    suggestions with `suggestions.class_id` to narrow."""
    if node is None:
        return true()
    folder = case(dict(folder_names), value=IMAGES.c.root_id, else_="") if folder_names \
        else literal("")
    full_path = folder + literal("/") + IMAGES.c.rel_path
    return _condition(node, full_path, pending)


def _condition(node: Node, full_path, pending) -> ColumnElement:
    if isinstance(node, Not):
        return not_(_condition(node.node, full_path, pending))
    if isinstance(node, AllOf):
        return and_(*(_condition(child, full_path, pending) for child in node.nodes))
    if isinstance(node, AnyOf):
        return or_(*(_condition(child, full_path, pending) for child in node.nodes))
    value = node.value
    by_path = full_path.ilike(f"%{escape_like(value)}%", escape="\\")
    has_tag = exists().where(TAGS.c.image_id == IMAGES.c.id, TAGS.c.positive.is_(True),
                             TAGS.c.class_id == class_id_by_name(value))
    if node.field == "tag":
        return has_tag
    if node.field == "suggested":
        return IMAGES.c.id.in_(pending().where(SUGGESTIONS.c.class_id == class_id_by_name(value)))
    if node.field == "split":
        return IMAGES.c.split == value.lower()
    if node.field == "path":
        return by_path
    return or_(by_path, has_tag)


def class_id_by_name(name: str):
    return (select(CLASSES.c.id).where(func.lower(CLASSES.c.name) == name.lower())
            .scalar_subquery())


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
