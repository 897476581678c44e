"""A griffe extension for the API reference: the Sphinx-style roles in personalign's docstrings become links.

personalign's docstrings name other objects with Sphinx roles (``:func:`held_only```, ``:class:`~.posterior```).
mkdocstrings renders docstrings as Markdown, where a role would show as literal text and nothing would notice a
role naming a function that no longer exists. This extension resolves every role against the loaded package (the
scope of the docstring first, as Python would, then the absolute path; a leading dot searches by suffix, as Sphinx
does), rewrites it to an optional autorefs link, and logs a warning for a role that resolves to nothing, so
``mkdocs build --strict`` fails on a stale reference. A method without a docstring shows the docstring of the
method it overrides (as Sphinx's autodoc does), so an override of ``fit`` or ``encode`` is not shown bare. Roles naming other packages (``fastapi.APIRouter``) render
as code and are not checked: there is no offline inventory to check them against.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import re
from collections.abc import Iterator

import griffe

# mkdocs --strict counts warnings on the "mkdocs" logger and its children.
log = logging.getLogger("mkdocs.plugins.personalign.crossrefs")

ROLE = re.compile(r":(?:py:)?(?P<role>func|meth|class|mod|data|attr|obj|exc|const):`(?P<body>[^`]+)`")
EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def iter_objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """The object and every member defined under it (aliases, i.e. imported names, are skipped)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from iter_objects(member)


class SphinxRoles(griffe.Extension):
    """Resolve ``:role:`target``` in the docstrings of ``packages``; warn on the ones that name nothing."""

    def __init__(self, packages: list[str] | None = None) -> None:
        super().__init__()
        self.packages = set(packages or ["personalign"])
        self.broken: list[str] = []

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        if pkg.name not in self.packages:
            return
        paths = [o.path for o in iter_objects(pkg)]
        for obj in iter_objects(pkg):
            doc = obj.docstring
            if doc is None or ":`" not in doc.value:
                continue
            doc.value = ROLE.sub(lambda m, obj=obj: self.rewrite(obj, m, paths), doc.value)
        # after the roles: an inherited docstring keeps the links resolved where it was written
        for obj in iter_objects(pkg):
            if obj.is_class:
                inherit_docstrings(obj)

    def rewrite(self, obj: griffe.Object, match: re.Match[str], paths: list[str]) -> str:
        body = match["body"].strip()
        title, target = None, body
        if m := EXPLICIT_TITLE.match(body):
            title, target = m["title"], m["target"]
        no_link = target.startswith("!")
        short = target.lstrip("!").startswith("~")
        target = target.lstrip("!~")
        if title is None:
            title = target.lstrip(".").rsplit(".", 1)[-1] if short else target
        code = f"<code>{html.escape(title)}</code>"
        if no_link:
            return code
        if not target.startswith(".") and self._is_external(obj, target):
            return code
        path = resolve(obj, target, paths)
        if path is None:
            where = f"{obj.filepath}:{obj.docstring.lineno if obj.docstring else 0}"
            msg = f"{where}: docstring of {obj.path}: :{match['role']}:`{match['body']}` names nothing that exists"
            self.broken.append(msg)
            log.warning(msg)
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    def _is_external(self, obj: griffe.Object, target: str) -> bool:
        """Whether a dotted target starts with another package: bound to one in the docstring's scope, or an
        importable top-level module that is not ours (a single name is always taken as one of ours)."""
        top = target.split(".", 1)[0]
        if top in self.packages or "." not in target:
            return False
        try:
            return obj.resolve(top).split(".", 1)[0] not in self.packages
        except griffe.NameResolutionError:
            return importlib.util.find_spec(top) is not None


def inherit_docstrings(cls: griffe.Class) -> None:
    """Give each method of ``cls`` without a docstring the docstring of the nearest base method that has one."""
    try:
        bases = cls.mro()
    except (ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return
    for name, member in cls.members.items():
        if member.is_alias or not member.is_function or member.docstring is not None:
            continue
        for base in bases:
            found = base.members.get(name)
            if found is not None and not found.is_alias and found.docstring is not None:
                member.docstring = griffe.Docstring(
                    found.docstring.value, lineno=found.docstring.lineno, parent=member
                )
                break


def lookup(obj: griffe.Object, path: str) -> str | None:
    """The definition's path when ``path`` names an object of the loaded tree, else None.

    Walks the path one name at a time through aliases (re-exports) and inherited members (a method a class
    inherits is named through the class, as ``OrdinalLowRank.adapt``)."""
    first, *rest = path.split(".")
    try:
        node: griffe.Object | griffe.Alias = obj.modules_collection[first]
        for name in rest:
            if node.is_alias:
                node = node.final_target
            members = node.all_members if node.is_class else node.members
            node = members[name]
        if node.is_alias:
            node = node.final_target
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return node.path


def resolve(obj: griffe.Object, target: str, paths: list[str]) -> str | None:
    """The path a role's target names from the docstring of ``obj``, or None when it names nothing."""
    if target.startswith("."):  # Sphinx: the current scopes first, then any object whose path ends so
        scope: griffe.Object | None = obj
        while scope is not None:
            if found := lookup(obj, scope.path + target):
                return found
            scope = scope.parent
        matches = [p for p in paths if p.endswith(target)]
        return lookup(obj, matches[0]) if len(matches) == 1 else None
    first, _, rest = target.partition(".")
    try:
        scoped = obj.resolve(first)
    except griffe.NameResolutionError:
        scoped = None
    if scoped is not None and (found := lookup(obj, f"{scoped}.{rest}" if rest else scoped)):
        return found
    return lookup(obj, target)
