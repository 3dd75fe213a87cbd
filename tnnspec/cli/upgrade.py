"""``tnnspec upgrade FILE... [--check]``: rewrite files in the newest format version.

Each file is migrated by :mod:`tnnspec.spec.migrate` and written back atomically; only the
changed spans differ (comments, blank lines, quotes and layout stay as they are). An included
file is upgraded when it is named; a named file that includes an older one says so.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_upgrade_parser(sub) -> None:
    u = sub.add_parser("upgrade", help="rewrite spec files in the newest format version, keeping comments and layout")
    u.add_argument("files", nargs="+", metavar="FILE")
    u.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if any file needs upgrading")
    u.set_defaults(fn=cmd_upgrade)


def _includes(path: Path, text: str) -> list[Path]:
    """The files a spec includes (best effort: [] if it cannot be read)."""
    from ..spec.diagnostics import SpecError
    from ..spec.migrate import Document
    from ..spec.source import compose

    try:
        doc = Document(compose(text.lstrip("\ufeff"), str(path)), str(path))
    except SpecError:
        return []
    node = doc.get(doc.root, "include")
    items = node.value if node is not None and not doc.scalar(node) else [node]
    return [path.parent / doc.scalar(n) for n in items if doc.scalar(n)]


def _version(path: Path) -> str | None:
    from ..spec.migrate import Document, read_text_exact
    from ..spec.source import compose

    try:
        doc = Document(compose(read_text_exact(path).lstrip("\ufeff"), str(path)), str(path))
    except Exception:  # unreadable: reported when it is loaded
        return None
    return doc.scalar(doc.get(doc.root, "tnnspec"))


def cmd_upgrade(args) -> int:
    from ..spec.diagnostics import SpecError
    from ..spec.migrate import latest_version, upgrade_file

    latest = latest_version()
    named = {Path(f).resolve() for f in args.files}
    failed = pending = 0
    for name in args.files:
        try:
            up = upgrade_file(name, check=args.check)
        except SpecError as exc:
            for d in exc.diagnostics:
                print(d, file=sys.stderr)
            failed += 1
            continue
        except OSError as exc:
            print(f"{name}: error: cannot write the upgraded file ({exc.strerror or exc}); "
                  "the file is unchanged", file=sys.stderr)
            failed += 1
            continue
        if not up.needed:
            print(f"{name}: already format {up.target_version}")
        else:
            pending += 1
            verb = "needs upgrading" if args.check else "upgraded"
            print(f"{name}: {verb}, format {up.source_version} -> {up.target_version}")
            for change in up.changes:
                print(f"  {change}")
        for inc in _includes(Path(name), up.text):
            version = _version(inc) if inc.is_file() else None
            if inc.resolve() not in named and version is not None and version != latest:
                print(f"  note: includes {inc} (format {version}): name it too to upgrade it")
    if failed:
        return 1
    return 1 if args.check and pending else 0
