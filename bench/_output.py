"""Output shared by the benchmarks: a document of headings, notes and tables, printed as text
and written as markdown (``--markdown``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document", "Table"]


@dataclass
class Table:
    """A table of pre-formatted cells; ``right`` holds the indexes of right-aligned columns."""

    headers: list[str]
    right: set[int] = field(default_factory=set)
    rows: list[list[str]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def add(self, cells: list[str], group: str = "") -> None:
        """Append a row; in text, a blank line separates rows of different groups."""
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(cells)
        self.groups.append(group)

    def text(self) -> list[str]:
        widths = [
            max(len(h), *(len(row[i]) for row in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]

        def line(cells: list[str]) -> str:
            return "  ".join(
                cell.rjust(widths[i]) if i in self.right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()

        out = [line(self.headers), line(["-" * w for w in widths])]
        previous: str | None = None
        for row, group in zip(self.rows, self.groups, strict=True):
            if previous is not None and group != previous:
                out.append("")
            previous = group
            out.append(line(row))
        return out

    def markdown(self) -> list[str]:
        def esc(cell: str) -> str:
            return cell.replace("|", "\\|")

        rule = ["---:" if i in self.right else "---" for i in range(len(self.headers))]
        out = ["| " + " | ".join(esc(h) for h in self.headers) + " |"]
        out.append("|" + "|".join(rule) + "|")
        out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return out


@dataclass
class Document:
    """Headings, paragraphs, tables and preformatted blocks, in order."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def para(self, *lines: str) -> None:
        """One paragraph (lines are joined by a space in markdown, kept apart in text)."""
        self.blocks.append(("para", list(lines)))

    def table(self, table: Table) -> None:
        self.blocks.append(("table", table))

    def pre(self, lines: list[str]) -> None:
        """Preformatted lines (a code block in markdown)."""
        self.blocks.append(("pre", lines))

    def text(self) -> str:
        out: list[str] = []
        for kind, payload in self.blocks:
            if kind == "heading":
                assert isinstance(payload, str)
                out += [payload, "=" * len(payload)]
            elif kind == "table":
                assert isinstance(payload, Table)
                out += payload.text()
            else:
                assert isinstance(payload, list)
                out += [str(line) for line in payload]
            out.append("")
        return "\n".join(out)

    def markdown(self, level: int = 3) -> str:
        out: list[str] = []
        for kind, payload in self.blocks:
            if kind == "heading":
                out.append(f"{'#' * level} {payload}")
            elif kind == "table":
                assert isinstance(payload, Table)
                out += payload.markdown()
            elif kind == "pre":
                assert isinstance(payload, list)
                out += ["```", *(str(line) for line in payload), "```"]
            else:
                assert isinstance(payload, list)
                out.append(" ".join(str(line) for line in payload))
            out.append("")
        return "\n".join(out)

    def write_markdown(self, path: Path, title: str, command: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self.markdown()
        path.write_text(f"## {title}\n\n```sh\n{command}\n```\n\n{body}".rstrip() + "\n")
