"""The subset of OData ``$filter`` that Microsoft Graph accepts on users and groups.

Parsing yields a predicate over a Graph object (a dict of property values) and the set of
constructs that Graph only allows as *advanced queries* (``ne``, ``not``, ``endsWith``, ``eq
null``, ``/$count``). The caller rejects those unless the request carries
``ConsistencyLevel: eventual`` and ``$count=true``, as Graph does.

String comparison is case-insensitive (the reference calls this likely but unverified); the
``''`` escape inside literals is honoured, and nothing else is special.

It also measures what Graph limits outside advanced queries (``graph_paging._check_limits``):
``or_children`` (an ``in`` counts one per value) and ``too_long`` (a value over 120 characters).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Predicate = Callable[[dict[str, Any], dict[str, Any]], bool]
"""``(graph_object, lambda_bindings) -> bool``"""


class FilterSyntaxError(ValueError):
    """The filter is not valid OData; Graph answers 400 ``BadRequest``."""


class FilterUnsupported(ValueError):
    """Valid OData that Graph does not support here: 400 ``Request_UnsupportedQuery``."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<punct>[(),:])
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$./]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "ge", "le", "gt", "lt"}
MAX_VALUE_LENGTH = 120
_ADVANCED_COMPARISONS = {"ne"}


@dataclass
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterSyntaxError(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        position = match.end()
    return tokens


@dataclass
class PropertyRule:
    """How one property may be filtered: its name in objects and whether it is a collection."""

    name: str
    collection: bool = False


@dataclass
class ParsedFilter:
    predicate: Predicate
    advanced: set[str] = field(default_factory=set)
    # When the whole filter is an OR of equalities (``p eq 'v'``, ``p in (...)``,
    # ``c/any(x:x eq 'v')``), the (property, folded value) pairs that can match: an index lookup
    # then replaces a scan of every object. None when the filter has another shape.
    equalities: set[tuple[str, Any]] | None = None
    or_children: int = 1
    too_long: str | None = None

    def matches(self, item: dict[str, Any]) -> bool:
        return self.predicate(item, {})


def _literal_value(token: Token) -> Any:
    if token.kind == "string":
        return token.text[1:-1].replace("''", "'")
    if token.kind == "number":
        return float(token.text) if "." in token.text else int(token.text)
    lowered = token.text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    raise FilterSyntaxError(f"Expected a literal, found '{token.text}'.")


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    left, right = _fold(left), _fold(right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "ge":
            return bool(left >= right)
        if op == "le":
            return bool(left <= right)
        if op == "gt":
            return bool(left > right)
        return bool(left < right)
    except TypeError:  # a string property compared with a number matches nothing
        return False


class _Parser:
    def __init__(self, text: str, properties: dict[str, PropertyRule], resource: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0
        self.properties = {name.lower(): rule for name, rule in properties.items()}
        self.resource = resource
        self.advanced: set[str] = set()
        self.variables: set[str] = set()
        self.width = self.max_width = 1  # or-children of the term just parsed, and the most
        self.too_long: str | None = None
        self.collection: str | None = None  # the collection a lambda variable ranges over

    # -------------------------------------------------------------------------- token helpers

    def peek(self, offset: int = 0) -> Token | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise FilterSyntaxError(f"Unexpected end of filter '{self.text}'.")
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise FilterSyntaxError(f"Expected '{text}' but found '{token.text}'.")

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    # ----------------------------------------------------------------------------------- grammar

    def parse(self) -> ParsedFilter:
        predicate = self.expression()
        if self.peek() is not None:
            raise FilterSyntaxError(f"Unexpected '{self.take().text}' in filter '{self.text}'.")
        return ParsedFilter(
            predicate,
            self.advanced,
            _equalities(self.tokens, self.properties),
            self.max_width,
            self.too_long,
        )

    def expression(self) -> Predicate:
        left = self.conjunction()
        width = self.width
        while self.at_word("or"):
            self.take()
            right = self.conjunction()
            width += self.width
            left = (lambda a, b: lambda o, v: a(o, v) or b(o, v))(left, right)
        self.width = width
        self.max_width = max(self.max_width, width)
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self.at_word("and"):
            self.take()
            right = self.unary()
            self.width = 1
            left = (lambda a, b: lambda o, v: a(o, v) and b(o, v))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.at_word("not"):
            self.take()
            self.advanced.add("not")
            inner = self.unary()
            self.width = 1
            return lambda o, v: not inner(o, v)
        self.width = 1
        return self.primary()

    def literal(self, name: str) -> Any:
        """A comparison's value; strings over 120 characters are noted for ``name``."""
        value = _literal_value(self.take())
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH and self.too_long is None:
            self.too_long = name if name not in self.variables else self.collection or name
        return value

    def primary(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise FilterSyntaxError(f"Unexpected end of filter '{self.text}'.")
        if token.text == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        if token.kind != "word":
            raise FilterSyntaxError(f"Unexpected '{token.text}' in filter '{self.text}'.")
        lowered = token.text.lower()
        if lowered in ("startswith", "endswith") and self.peek(1) is not None:
            return self.string_function(lowered)
        if "/" in token.text:
            return self.collection_expression()
        return self.comparison()

    def operand(self) -> tuple[str, PropertyRule | None]:
        """A property or a lambda variable; returns its name and rule (None for variables)."""
        token = self.take()
        if token.kind != "word":
            raise FilterSyntaxError(f"Expected a property name, found '{token.text}'.")
        if token.text in self.variables:
            return token.text, None
        rule = self.properties.get(token.text.lower())
        if rule is None:
            raise FilterUnsupported(
                f"Unsupported or invalid query filter clause specified for property "
                f"'{token.text}' of resource '{self.resource}'."
            )
        return token.text, rule

    @staticmethod
    def value_of(
        name: str, rule: PropertyRule | None, item: dict[str, Any], bound: dict[str, Any]
    ) -> Any:
        return bound[name] if rule is None else item.get(rule.name)

    def comparison(self) -> Predicate:
        name, rule = self.operand()
        operator = self.take()
        op = operator.text.lower()
        if rule is not None and rule.collection:
            raise FilterUnsupported(
                f"Unsupported or invalid query filter clause specified for property "
                f"'{name}' of resource '{self.resource}'."
            )
        if op == "in":
            self.expect("(")
            values = [self.literal(name)]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                values.append(self.literal(name))
            self.expect(")")
            self.width = len(values)
            self.max_width = max(self.max_width, self.width)
            folded = {_fold(v) for v in values}
            return lambda o, v: _fold(self.value_of(name, rule, o, v)) in folded
        if op not in _COMPARISONS:
            raise FilterSyntaxError(f"Unknown operator '{operator.text}'.")
        value = self.literal(name)
        if op in _ADVANCED_COMPARISONS:
            self.advanced.add(op)
        if value is None:
            self.advanced.add("eq null")
        return lambda o, v: _compare(op, self.value_of(name, rule, o, v), value)

    def string_function(self, function: str) -> Predicate:
        self.take()
        self.expect("(")
        name, rule = self.operand()
        self.expect(",")
        value = self.literal(name)
        self.expect(")")
        if not isinstance(value, str):
            raise FilterSyntaxError(f"{function} needs a string literal.")
        if function == "endswith":
            self.advanced.add("endsWith")
        needle = value.lower()

        def test(o: dict[str, Any], v: dict[str, Any]) -> bool:
            actual = self.value_of(name, rule, o, v)
            if not isinstance(actual, str):
                return False
            lowered = actual.lower()
            return (
                lowered.startswith(needle) if function == "startswith" else lowered.endswith(needle)
            )

        return test

    def collection_expression(self) -> Predicate:
        token = self.take()
        path, _, operation = token.text.partition("/")
        rule = self.properties.get(path.lower())
        if rule is None or not rule.collection:
            raise FilterUnsupported(
                f"Unsupported or invalid query filter clause specified for property "
                f"'{path}' of resource '{self.resource}'."
            )
        if operation.lower() == "$count":
            self.advanced.add("$count")
            op = self.take().text.lower()
            number = _literal_value(self.take())
            if op not in _COMPARISONS:
                raise FilterSyntaxError(f"Unknown operator '{op}'.")
            return lambda o, v: _compare(op, len(o.get(rule.name) or []), number)
        if operation.lower() not in ("any", "all"):
            raise FilterSyntaxError(f"Unknown collection operation '{operation}'.")
        if operation.lower() == "all":
            self.advanced.add("all")
        self.expect("(")
        variable = self.take()
        if variable.kind != "word":
            raise FilterSyntaxError("Expected a lambda variable.")
        self.expect(":")
        self.variables.add(variable.text)
        self.collection = path
        body = self.expression()
        self.variables.discard(variable.text)
        self.expect(")")
        self.width = 1
        quantifier = any if operation.lower() == "any" else all

        def test(o: dict[str, Any], v: dict[str, Any]) -> bool:
            values = o.get(rule.name) or []
            return quantifier(body(o, {**v, variable.text: item}) for item in values)

        return test


def _equalities(
    tokens: list[Token], properties: dict[str, PropertyRule]
) -> set[tuple[str, Any]] | None:
    """The equality alternatives of a filter made only of ``or``-joined equalities, else None.

    Recognised terms: ``p eq 'v'``, ``p in ('v', …)`` and ``c/any(x:x eq 'v')``; anything else
    (another operator, ``and``, ``not``, a function) makes the filter unindexable.
    """
    pairs: set[tuple[str, Any]] = set()
    index = 0

    def text(at: int) -> str:
        return tokens[at].text if at < len(tokens) else ""

    while index < len(tokens):
        name = text(index)
        rule = properties.get(name.lower())
        path, _, operation = name.partition("/")
        collection = properties.get(path.lower())
        if rule is not None and not rule.collection and text(index + 1).lower() == "eq":
            pairs.add((rule.name, _fold(_literal_value(tokens[index + 2]))))
            index += 3
        elif rule is not None and not rule.collection and text(index + 1).lower() == "in":
            index += 3  # name, in, (
            while text(index) not in (")", ""):
                if text(index) != ",":
                    pairs.add((rule.name, _fold(_literal_value(tokens[index]))))
                index += 1
            index += 1
        elif (
            collection is not None
            and collection.collection
            and operation.lower() == "any"
            and [text(index + k) for k in (1, 3, 5)] == ["(", ":", "eq"]
            and text(index + 2) == text(index + 4)
            and text(index + 7) == ")"
        ):
            pairs.add((collection.name, _fold(_literal_value(tokens[index + 6]))))
            index += 8
        else:
            return None
        if index < len(tokens):
            if text(index).lower() != "or":
                return None
            index += 1
    return pairs


def parse_filter(text: str, properties: dict[str, PropertyRule], resource: str) -> ParsedFilter:
    """Parse ``$filter`` against the filterable ``properties`` of ``resource``."""
    if not text.strip():
        raise FilterSyntaxError("The $filter expression is empty.")
    return _Parser(text, properties, resource).parse()
