"""The subset of AtHoc ``Criteria`` expressions the simulator understands.

Grammar (keywords are case-insensitive; ``and`` binds tighter than ``or``)::

    expression := term ( "or" term )*
    term       := factor ( "and" factor )*
    factor     := "(" expression ")" | comparison
    comparison := ATTRIBUTE "pr"
                | ATTRIBUTE ( "eq" | "ne" | "lt" | "le" | "gt" | "ge" ) VALUE

``ATTRIBUTE`` is a common name such as ``LOGIN_ID``, ``On-Duty-DTG`` or ``a.b`` (letters,
digits, ``_``, ``-`` and ``.``). ``VALUE`` is single-quoted; ``''`` inside it is one quote.

Semantics, chosen to be plausible for AtHoc (whose exact grammar is not documented):

* ``eq`` / ``ne`` compare text, case-insensitively; a missing attribute counts as ``""``.
* ``pr`` is true when the attribute has a non-blank value.
* ``lt`` / ``le`` / ``gt`` / ``ge`` on a *date-time attribute* compare date-times parsed
  with the organization's format; a user value that does not parse never matches, and a
  literal that does not parse is an error. With ``dates_as_text`` (or on any other
  attribute) they compare text, case-insensitively. A missing or blank value never matches
  an ordering comparison. User values are trimmed before they are parsed unless
  ``untrimmed_dates`` is set: then a value with a stray space is not a date-time to the
  server and never matches an ordering comparison (as a strictly typed server would treat it).

Bad syntax raises :class:`CriteriaError` (a ``ValueError``) naming the position.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Union

__all__ = [
    "And",
    "Comparison",
    "Criteria",
    "CriteriaError",
    "EvalOptions",
    "Or",
    "parse_criteria",
]

COMPARISON_OPERATORS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
ORDERING_OPERATORS = frozenset({"lt", "le", "gt", "ge"})
_ATTRIBUTE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class CriteriaError(ValueError):
    """A Criteria expression that cannot be parsed (or evaluated: a bad date literal)."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" "string" "word" "end"
    text: str
    position: int  # 0-based offset in the expression


def _tokenize(text: str) -> Iterator[_Token]:
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            yield _Token(ch, ch, i)
            i += 1
        elif ch == "'":
            start = i
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise CriteriaError(f"unterminated quoted value starting at position {start}")
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        chars.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(text[i])
                i += 1
            yield _Token("string", "".join(chars), start)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "()'":
                i += 1
            yield _Token("word", text[start:i], start)
    yield _Token("end", "", n)


@dataclass(frozen=True)
class EvalOptions:
    """How ordering comparisons treat date-time attributes."""

    datetime_attributes: frozenset[str] = frozenset()  # casefolded common names
    datetime_format: str = "%d/%m/%Y %H:%M:%S"
    dates_as_text: bool = False
    untrimmed_dates: bool = False

    @classmethod
    def build(
        cls,
        datetime_attributes: Collection[str] = (),
        datetime_format: str = "%d/%m/%Y %H:%M:%S",
        dates_as_text: bool = False,
        untrimmed_dates: bool = False,
    ) -> EvalOptions:
        names = frozenset(a.casefold() for a in datetime_attributes)
        return cls(names, datetime_format, dates_as_text, untrimmed_dates)

    def is_date(self, attribute: str) -> bool:
        return not self.dates_as_text and attribute.casefold() in self.datetime_attributes


def _lookup(user: Mapping[str, str], attribute: str) -> str:
    """The user's value for ``attribute`` (exact name first, then case-insensitive), or ""."""
    if attribute in user:
        value = user[attribute]
    else:
        folded = attribute.casefold()
        value = next((v for k, v in user.items() if k.casefold() == folded), "")
    return "" if value is None else str(value)


def _parse_date(value: str, fmt: str, *, trim: bool = True) -> Optional[datetime]:
    try:
        return datetime.strptime(value.strip() if trim else value, fmt)
    except ValueError:
        return None


def _ordered(op: str, left: Union[str, datetime], right: Union[str, datetime]) -> bool:
    # Both sides share one type (both str or both datetime).
    if op == "lt":
        return left < right  # type: ignore[operator]
    if op == "le":
        return left <= right  # type: ignore[operator]
    if op == "gt":
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


@dataclass(frozen=True)
class Comparison:
    attribute: str
    operator: str  # "pr", "eq", "ne", "lt", "le", "gt", "ge" (lower case)
    value: Optional[str] = None  # None for "pr"

    def matches(self, user: Mapping[str, str], options: EvalOptions) -> bool:
        actual = _lookup(user, self.attribute)
        if self.operator == "pr":
            return actual.strip() != ""
        expected = self.value if self.value is not None else ""
        if self.operator == "eq":
            return actual.casefold() == expected.casefold()
        if self.operator == "ne":
            return actual.casefold() != expected.casefold()
        if actual.strip() == "":
            return False
        if options.is_date(self.attribute):
            bound = _parse_date(expected, options.datetime_format)
            if bound is None:
                raise CriteriaError(
                    f"{self.attribute} {self.operator} {expected!r}: not a date-time in the "
                    f"organization's format {options.datetime_format!r}"
                )
            when = _parse_date(actual, options.datetime_format, trim=not options.untrimmed_dates)
            return when is not None and _ordered(self.operator, when, bound)
        return _ordered(self.operator, actual.casefold(), expected.casefold())

    def validate(self, options: EvalOptions) -> None:
        if (
            self.operator in ORDERING_OPERATORS
            and options.is_date(self.attribute)
            and _parse_date(self.value or "", options.datetime_format) is None
        ):
            raise CriteriaError(
                f"{self.attribute} {self.operator} {self.value!r}: not a date-time in the "
                f"organization's format {options.datetime_format!r}"
            )


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]

    def matches(self, user: Mapping[str, str], options: EvalOptions) -> bool:
        return all(p.matches(user, options) for p in self.parts)

    def validate(self, options: EvalOptions) -> None:
        for p in self.parts:
            p.validate(options)


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]

    def matches(self, user: Mapping[str, str], options: EvalOptions) -> bool:
        return any(p.matches(user, options) for p in self.parts)

    def validate(self, options: EvalOptions) -> None:
        for p in self.parts:
            p.validate(options)


Node = Union[Comparison, And, Or]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(_tokenize(text))
        self.index = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def is_keyword(self, word: str) -> bool:
        return self.current.kind == "word" and self.current.text.lower() == word

    def error(self, expected: str) -> CriteriaError:
        token = self.current
        found = "end of expression" if token.kind == "end" else repr(token.text)
        return CriteriaError(f"expected {expected} at position {token.position}, found {found}")

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise CriteriaError("empty Criteria expression")
        node = self.expression()
        if self.current.kind != "end":
            raise self.error("'and', 'or', ')' or the end")
        return node

    def expression(self) -> Node:
        parts = [self.term()]
        while self.is_keyword("or"):
            self.advance()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def term(self) -> Node:
        parts = [self.factor()]
        while self.is_keyword("and"):
            self.advance()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def factor(self) -> Node:
        if self.current.kind == "(":
            self.advance()
            node = self.expression()
            if self.current.kind != ")":
                raise self.error("')'")
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        token = self.current
        if token.kind != "word" or not _ATTRIBUTE_RE.match(token.text):
            raise self.error("an attribute name or '('")
        self.advance()
        op_token = self.current
        op = op_token.text.lower() if op_token.kind == "word" else ""
        if op == "pr":
            self.advance()
            return Comparison(token.text, "pr")
        if op not in COMPARISON_OPERATORS:
            raise self.error(f"an operator (eq, ne, lt, le, gt, ge, pr) after {token.text!r}")
        self.advance()
        if self.current.kind != "string":
            raise self.error(f"a single-quoted value after {op_token.text!r}")
        value = self.advance().text
        return Comparison(token.text, op, value)


def parse_criteria(text: str) -> Node:
    """Parse a Criteria expression into a tree of :class:`Comparison`, :class:`And`, :class:`Or`."""
    return _Parser(text).parse()


class Criteria:
    """A parsed Criteria expression: ``Criteria("A eq 'x' or B pr").matches(user)``."""

    def __init__(
        self,
        text: str,
        *,
        datetime_attributes: Collection[str] = (),
        datetime_format: str = "%d/%m/%Y %H:%M:%S",
        dates_as_text: bool = False,
        untrimmed_dates: bool = False,
    ) -> None:
        self.text = text
        self.root: Node = parse_criteria(text)
        self.options = EvalOptions.build(datetime_attributes, datetime_format, dates_as_text, untrimmed_dates)
        self.root.validate(self.options)

    def matches(self, user: Mapping[str, str]) -> bool:
        return self.root.matches(user, self.options)

    def __repr__(self) -> str:
        return f"Criteria({self.text!r})"
