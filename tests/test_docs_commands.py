"""Every command in the docs still works, and every relative link still points somewhere.

The commands are the `hrem ...`, `python jobs/...` and `python benchmarks/...` lines of the fenced code blocks
(and the inline code spans that carry a flag) in README.md, docs/*.md and benchmarks/README.md:
- `hrem ...` is parsed by the real parser (`hrem.cli.build_parser`), without prefix abbreviations, so a
  renamed or removed flag or subcommand fails here. Placeholders (`RUN`, `DIR`, `N`, `$D`) become a value the
  flag accepts; `[--opt X]` is checked as if given; `a|b` takes `a`; a command with `...` (or an inline span,
  usually a fragment) may leave required arguments out.
- `python jobs/X.py` / `python benchmarks/X.py`: the script exists and its `--help` (run once per script)
  lists every flag used.
- `python -m pytest FILES` / `python tests/X.py`: the files exist.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
CODE_LANGUAGES = {"", "bash", "sh", "shell", "console"}   # python / json blocks hold no shell commands
PLACEHOLDER = re.compile(r"^(\$\{?[A-Za-z_]\w*\}?|[A-Z][A-Z0-9_]*(\[.*\])?|<[^>]+>|\.\.\.|…)$")
ALTERNATIVES = re.compile(r"^[\w.,:/+-]+(\|[\w.,:/+-]+)+$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
INLINE_COMMAND = re.compile(r"^((time|[A-Za-z_]\w*=\S+) )*(hrem [a-z]|python3? (jobs|benchmarks|tests)/|python3? -m (pytest|hrem) )")
SEPARATORS = {"&&", "||", ";"}
ENDERS = {"|", ">", ">>", "2>", "2>&1", "&"}


@dataclass(frozen=True)
class Command:
    where: str          # "docs/index.md:72"
    tokens: tuple       # the command, brackets and alternatives resolved
    partial: bool       # `...` or an inline span: required arguments may be missing

    def __str__(self):
        return f"{self.where}: {shlex.join(self.tokens)}"


# ---------------------------------------------------------------------------------------------- extraction

def _fenced_blocks(text):
    """(language, first line number, lines) of every fenced code block."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if lang is None:
                lang, start, body = stripped[3:].strip().lower(), number + 1, []
            else:
                blocks.append((lang, start, body))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def _logical_lines(lines, first_number):
    """Join `\\` continuations; yield (line number, text)."""
    pending, start = "", None
    for offset, line in enumerate(lines):
        if start is None:
            start = first_number + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending, start = "", None
    if pending:
        yield start, pending


def _resolve(tokens):
    """Brackets, alternatives and shell syntax -> a list of commands (token lists)."""
    commands, current, depth = [], [], 0
    for token in tokens:
        if depth == 0 and token in SEPARATORS:
            commands.append(current)
            current = []
            continue
        if depth == 0 and (token in ENDERS or token.startswith((">", "2>"))):
            commands.append(current)
            current = None               # the rest of the segment is a pipe / redirect target
            continue
        if current is None:
            continue
        opened = token.startswith("[") and not PLACEHOLDER.match(token)
        if opened:
            depth += 1
            token = token[1:]
        while depth and token.endswith("]") and token.count("[") < token.count("]"):
            depth -= 1
            token = token[:-1]
        if token in ("", "|"):
            continue
        if ALTERNATIVES.match(token):
            token = token.split("|")[0]
        current.append(token)
    if current:
        commands.append(current)
    return [c for c in commands if c]


def _strip_prefix(tokens):
    while tokens and (ENV_ASSIGNMENT.match(tokens[0]) or tokens[0] in ("$", "time", "sudo")):
        tokens = tokens[1:]
    return tokens


def _is_command(tokens):
    if not tokens:
        return False
    if tokens[0] == "hrem":
        return True
    if tokens[0] in ("python", "python3") and len(tokens) > 1:
        return (tokens[1].startswith(("jobs/", "benchmarks/", "tests/"))
                or tokens[1:3] in (["-m", "hrem"], ["-m", "pytest"]))
    return False


def _commands_in_text(where_file, number, text, partial):
    text = text.strip()
    if text.startswith("$ "):
        text = text[2:]
    if not text or text.startswith("#"):
        return []
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:                         # unbalanced quotes: a prose line, not a command
        if re.match(r"^(hrem|python3?) ", text):
            return [Command(f"{where_file}:{number}", ("<unparsable>", text, str(exc)), partial)]
        return []
    found = []
    for resolved in _resolve(tokens):
        command = _strip_prefix(resolved)
        if _is_command(command):
            is_partial = partial or any(t in ("...", "…") for t in command)
            found.append(Command(f"{where_file}:{number}", tuple(command), is_partial))
    return found


def _inline_spans(text):
    """(line number, span) of inline code outside fences that reads like a command with a flag."""
    spans, fence, paragraph = [], False, []       # paragraph: [(line number, text)]
    for number, line in enumerate(text.split("\n") + [""], 1):
        if line.strip().startswith("```"):
            fence, paragraph = not fence, []
            continue
        if fence:
            continue
        if line.strip():
            paragraph.append((number, line))
            continue
        joined, starts = "", []
        for line_number, part in paragraph:
            starts.append((len(joined), line_number))
            joined += part + " "
        paragraph = []
        for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
            span = match.group(1).strip()
            if INLINE_COMMAND.match(span) and (" -" in span or " tests/" in span):
                line_number = max(n for offset, n in starts if offset <= match.start())
                spans.append((line_number, span))
    return spans


def _rel(path):
    return str(path.relative_to(ROOT))


def collect_commands():
    commands = []
    for path in DOC_FILES:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for lang, first, lines in _fenced_blocks(text):
            if lang not in CODE_LANGUAGES:
                continue
            for number, line in _logical_lines(lines, first):
                commands.extend(_commands_in_text(_rel(path), number, line, partial=False))
        for number, span in _inline_spans(text):
            commands.extend(_commands_in_text(_rel(path), number, span, partial=True))
    return commands


COMMANDS = collect_commands()


# ---------------------------------------------------------------------------------------------- checking

def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


@functools.lru_cache(maxsize=2)
def _parser(relaxed: bool):
    from hrem.cli import build_parser

    parser = build_parser()
    for p in _all_parsers(parser):
        p.allow_abbrev = False                      # the docs must spell every flag in full
        if relaxed:
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    continue
                action.required = False
                if not action.option_strings:       # positionals
                    if action.nargs is None:
                        action.nargs = "?"
                    elif action.nargs == "+":
                        action.nargs = "*"
    return parser


def _subparser_for(parser, tokens):
    """The deepest subparser the leading tokens select (`hrem data shapes ...` -> the shapes parser)."""
    current = parser
    for token in tokens:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        current = subs[0].choices[token]
    return current


def _dummy_for(action, placeholder):
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type in (None, str) or not callable(action.type):
        return placeholder
    for candidate in ("1", "0.5", "a", "1,2", "a=1"):
        try:
            action.type(candidate)
            return candidate
        except Exception:    # noqa: BLE001 - any failure means "not this candidate"
            continue
    return placeholder


def _fill_placeholders(parser, args, partial):
    """Give each placeholder value a value its flag's type accepts; drop placeholder `...`. In a partial
    command (`hrem ground --out` in a sentence) a last flag without its value gets one."""
    sub = _subparser_for(parser, args)
    if partial and args:
        action = sub._option_string_actions.get(args[-1])
        if action is not None and action.nargs != 0:
            args = [*args, "X"]
    out = []
    for token in args:
        previous = out[-1] if out else None
        action = sub._option_string_actions.get(previous) if previous else None
        if PLACEHOLDER.match(token) and not token.startswith("-"):
            if action is not None and action.nargs != 0:
                out.append(_dummy_for(action, token if token not in ("...", "…") else "X"))
                continue
            if token in ("...", "…"):
                continue
        out.append(token)
    return out


def _parse(tokens, relaxed):
    parser = _parser(relaxed)
    args = _fill_placeholders(parser, list(tokens), relaxed)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code:
                return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return None


@functools.lru_cache(maxsize=None)
def _script_help(script: str) -> str:
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"{script} --help exited {out.returncode}: {out.stderr[-500:]}"
    return out.stdout


def _flags(tokens):
    return sorted({t.split("=", 1)[0] for t in tokens if re.match(r"^--?[A-Za-z][\w-]*", t)} - {"-m"})


def check(command: Command):
    tokens = command.tokens
    if tokens[0] == "<unparsable>":
        return f"cannot split the line ({tokens[2]}): {tokens[1]}"
    if tokens[0] in ("python", "python3") and tokens[1:3] == ("-m", "hrem"):
        tokens = ("hrem", *tokens[3:])
    if tokens[0] == "hrem":
        return _parse(tokens[1:], relaxed=command.partial)
    if tokens[1:3] == ("-m", "pytest"):
        missing = [t.split("::")[0] for t in tokens[3:] if t.startswith("tests/")
                   and not (ROOT / t.split("::")[0]).exists()]
        return f"no such test file(s): {missing}" if missing else None
    script = tokens[1]
    if not (ROOT / script).is_file():
        return f"no such script: {script}"
    if script.startswith("tests/"):
        return None
    help_text = _script_help(script)
    unknown = [f for f in _flags(tokens[2:])
               if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", help_text)]
    return f"{script} --help does not list {unknown}" if unknown else None


def test_the_docs_have_commands():
    # a broken extractor would make every other test here pass vacuously
    assert len(COMMANDS) > 50, [str(c) for c in COMMANDS]
    readme = [c for c in COMMANDS if c.where.startswith("README.md")]
    assert any(c.tokens[:2] == ("python", "jobs/embed.py") for c in readme), "the quick start's job is gone"


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_doc_command_parses(command):
    problem = check(command)
    assert problem is None, f"{command}\n  -> {problem}"


# ---------------------------------------------------------------------------------------------- links

def _anchors(path: Path) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces -> '-', duplicates numbered."""
    seen, anchors, fence = {}, set(), False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            fence = not fence
        match = None if fence else re.match(r"^#{1,6} (.*)$", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1).strip())
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path: Path):
    fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            yield number, target


@pytest.mark.parametrize("path", [p for p in DOC_FILES if p.is_file()], ids=_rel)
def test_relative_links_and_images_exist(path):
    broken = []
    for number, target in _links(path):
        if re.match(r"^[a-z]+:", target):            # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{_rel(path)}:{number}: {target} (no such file)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{_rel(path)}:{number}: {target} (no heading #{anchor} in {_rel(dest)})")
    assert not broken, "\n".join(broken)
