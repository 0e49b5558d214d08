"""Every `chunkflow` command line in the docs and scripts parses with the current CLI.

The lines are collected from README.md, examples/ (*.sh, *.md, *.py docstrings and comments),
docker/ (README, the Dockerfiles' comments and ENTRYPOINT + CMD) and distributed/ (*.yml,
*.sh, *.md):

- a command starts at a `chunkflow` word (or `.venv/bin/chunkflow`) in command position: first
  on the line, after `exec`/`time`/`$ `/`VAR=value`, or after a wrapper such as `parallel`,
  `srun` or `apptainer exec IMAGE`; `docker run ... chunkflow:TAG ARGS` counts as
  `chunkflow ARGS`. In Markdown, fenced code blocks count line by line and prose only through
  inline code spans (`` `chunkflow ...` ``);
- lines ending in a backslash are joined with the next (comment prefixes removed), shell
  variables get plausible values (`$CHUNK_SIZE` -> `64 512 512`, `$MIP` -> `1`, paths
  otherwise; `${X:-default}` -> default), quotes are handled with shlex, and the command ends
  at `&`, `&&`, `;`, `|`, a redirection or GNU parallel's `:::`; `...` (an elided part) is
  dropped;
- in comments and docstrings, `chunkflow WORD` only counts when WORD looks like an operator or
  option (`chunkflow as a Slurm job array` is prose);
- an operator quoted with options in Markdown prose (`` `plugin -f my.py -i image` ``) is checked
  as a fragment: its options must exist and parse, but required ones may be left out.

Each command is then parsed exactly as `chunkflow` parses it — the global options, then each
operator of the chain with its own options — with click, without running anything: an unknown
operator, an unknown option, a value of the wrong type or a missing required option fails
with the file and line. `--help` and `--version` count as parsed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from chunkflow.cli.main import cli
from tests.conftest import REPO

# Placeholder words in illustrative commands, replaced before parsing.
PLACEHOLDER_TOKENS = {"OPERATOR": "read-h5"}
ELISIONS = {"...", "…"}

# Words that may precede `chunkflow` in command position, and wrappers whose own arguments
# may precede it (`parallel -j 8 --delay 1 chunkflow ...`).
PREFIXES = {"$", "exec", "time", "nohup", "sudo", "command", "env", "!", "then", "do", "else"}
PREFIXES |= {"-", "RUN", "if", "while", "until", "{", "("}
WRAPPERS = {"parallel", "sem", "xargs", "srun", "apptainer", "singularity", "timeout", "mpirun"}
DOCKER_IMAGE = re.compile(r"(^|/)chunkflow:[\w.\-]+$")


def source_files() -> list[Path]:
    files = [REPO / "README.md"]
    for pattern in ("*.sh", "*.md", "*.py"):
        files += (REPO / "examples").rglob(pattern)
    files += [REPO / "docker" / "README.md", *(REPO / "docker").glob("Dockerfile*")]
    for pattern in ("*.yml", "*.yaml", "*.sh", "*.md"):
        files += (REPO / "distributed").rglob(pattern)
    return sorted({f for f in files if f.is_file()})


@dataclass
class Command:
    path: str  # relative to the repository
    lineno: int
    text: str  # the logical line it came from
    argv: list[str] = field(default_factory=list)  # arguments after `chunkflow`
    error: str | None = None  # extraction failed (e.g. unbalanced quotes)
    fragment: bool = False  # an operator quoted in prose: its required options may be left out

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


# ---------------------------------------------------------------------------------------------
# Lines of a file: (line number, kind, text) with kind "code", "comment" or "span"; comment
# text has its `#` prefix removed.

COMMENT = re.compile(r"^\s*#+\s?")
FENCE = re.compile(r"^\s*(```|~~~)")
SPAN = re.compile(r"`([^`]+)`")


def file_lines(path: Path) -> list[tuple[int, str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[tuple[int, str, str]] = []
    if path.suffix == ".md":
        in_fence = False
        for n, line in enumerate(lines, 1):
            if FENCE.match(line):
                in_fence = not in_fence
            elif in_fence:
                out.append(_code_or_comment(n, line))
            else:
                out += [(n, "span", m.group(1)) for m in SPAN.finditer(line)]
    elif path.suffix == ".py":
        out = [(n, "comment", COMMENT.sub("", line).strip()) for n, line in enumerate(lines, 1)]
    else:  # shell, YAML, Dockerfile
        out = [
            _code_or_comment(n, line)
            for n, line in enumerate(lines, 1)
            if not line.startswith("#!")
        ]
    return out


def _code_or_comment(n: int, line: str) -> tuple[int, str, str]:
    if line.lstrip().startswith("#"):
        return n, "comment", COMMENT.sub("", line).strip()
    return n, "code", line.strip()


def logical_lines(lines: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """Join lines ending in a backslash with the following line of the same kind."""
    out = []
    current: tuple[int, str, list[str]] | None = None
    for n, kind, text in lines:
        if current is not None and current[1] != kind:  # a comment ends a continued command
            out.append(current)
            current = None
        if current is None:
            current = (n, kind, [])
        continued = kind != "span" and text.endswith("\\")
        current[2].append(text[:-1].strip() if continued else text)
        if not continued:
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return [(n, kind, " ".join(part for part in parts if part)) for n, kind, parts in out]


# ---------------------------------------------------------------------------------------------
# Shell variables -> plausible values.

VECTOR_VALUE = "64 512 512"
INT_VALUE = "1"
VECTOR_NAME = re.compile(r"SIZE|OVERLAP|OFFSET|STRIDE|MARGIN")
NOT_VECTOR_NAME = re.compile(r"BATCH|NUM|PER_|QUEUE")
INT_NAME = re.compile(
    r"MIP|INDEX|_ID$|^ID$|NUM|COUNT|TIMEOUT|RETR|WAIT|SECONDS|WORKERS|JOBS|THREADS|BATCH|"
    r"PER_|START|STOP|LEVEL|CHANNEL|CPUS|GPUS|REPLICAS|SEED|^[NIJK]$|^\d+$|^[#?$!]$"
)
NAMED_VALUES = {
    "DTYPE": "uint8",
    "FRAMEWORK": "pytorch",
    "DEVICE": "cpu",
    "LAYER_TYPE": "image",
    "ENCODING": "raw",
    "BBOX": "0-64_0-512_0-512",
    "THRESHOLD": "0.5",
    "MODE": "cc",
    "PHASE": "fragments",
    "OPTIONS": "",  # more options for a command, none by default
}


def variable_value(name: str) -> str:
    upper = name.upper()
    for key, value in NAMED_VALUES.items():
        if key in upper:
            return value
    if VECTOR_NAME.search(upper) and not NOT_VECTOR_NAME.search(upper):
        return VECTOR_VALUE
    if INT_NAME.search(upper):
        return INT_VALUE
    return f"/placeholder/chunkflow-docs/{name.lower()}"


ARRAY_QUOTED = re.compile(r'"\$\{(\w+)\[[@*]\]\}"')
ARRAY = re.compile(r"\$\{(\w+)\[[@*]\]\}")
ALL_ARGS = re.compile(r'"\$[@*]"|\$[@*]')
ARITHMETIC = re.compile(r"\$\(\([^()$]*\)\)")
SUBSHELL = re.compile(r"\$\(([^()$]*)\)")
BRACED = re.compile(r"\$\{(#?)(\w+|[#?$!])(?:(:?[-+=?])([^{}$]*)|([%#/^,]{1,2})[^{}$]*)?\}")
PLAIN = re.compile(r"\$(\w+|[#?$!])")


def _braced(m: re.Match) -> str:
    length, name, op, word, _ = m.groups()
    if length:
        return INT_VALUE
    if op and op.lstrip(":") in "-=" and word:
        return word  # ${X:-default}: the default, as when X is unset
    if op and op.lstrip(":") == "+":
        return word or ""  # ${X:+word}: as when X is set
    return variable_value(name)


def _subshell(m: re.Match) -> str:
    words = m.group(1).split()
    if words and words[0] in ("pwd", "mktemp", "dirname", "realpath", "readlink"):
        return "/placeholder/chunkflow-docs/dir"
    return INT_VALUE


def substitute_variables(text: str) -> str:
    text = ARRAY_QUOTED.sub(lambda m: variable_value(m.group(1)), text)
    text = ARRAY.sub(lambda m: variable_value(m.group(1)), text)
    text = ALL_ARGS.sub("", text)
    for _ in range(10):  # innermost first: ${X:-${Y}}, $(cmd $(other))
        new = ARITHMETIC.sub(INT_VALUE, text)
        new = PLAIN.sub(lambda m: variable_value(m.group(1)), new)
        new = BRACED.sub(_braced, new)
        new = SUBSHELL.sub(_subshell, new)
        if new == text:
            break
        text = new
    return text


# ---------------------------------------------------------------------------------------------
# Commands in a logical line.

MENTION = re.compile(r"(^|[\s/(])chunkflow(\s|$)|chunkflow:")
CONTROL = re.compile(r"^(&&?|\|\|?|;;?|:::+|\)|\d*[<>].*)$")  # ::: ends GNU parallel's command


def _ends_command(tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        if CONTROL.match(token):
            break
        if token.endswith((";", "&")) and not token.endswith(("\\;", "\\&")):
            out.append(token.rstrip(";&"))
            break
        out.append(token)
    return [PLACEHOLDER_TOKENS.get(t, t) for t in out if t not in ELISIONS]


def _is_chunkflow(token: str) -> bool:
    return token == "chunkflow" or token.endswith("/bin/chunkflow")


def _looks_like_command(argv: list[str]) -> bool:
    """In comments: `chunkflow read-h5 ...` or `chunkflow --help`, not `chunkflow as a ...`."""
    if not argv:
        return False
    first = argv[0]
    return (
        first.startswith("-")
        or _is_operator(first)
        or re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", first) is not None
    )


def _is_operator(word: str) -> bool:
    return cli.get_command(None, word) is not None


def commands_in_line(text: str, kind: str) -> tuple[list[list[str]], str | None]:
    """The argument lists of the chunkflow commands in one logical line, and an error."""
    if not MENTION.search(text):
        return [], None
    try:
        tokens = shlex.split(substitute_variables(text), comments=True)
    except ValueError as err:
        if kind == "comment":
            return [], None  # prose with an apostrophe
        return [], f"cannot split the line into shell words: {err}"
    commands = []
    segment_start = 0
    for k, token in enumerate(tokens):
        if CONTROL.match(token) and not token.startswith(":::"):
            segment_start = k + 1
            continue
        before = tokens[segment_start:k]
        if _is_chunkflow(token):
            plain = all(t in PREFIXES or re.match(r"^\w+=", t) for t in before)
            wrapped = bool(before) and before[0] in WRAPPERS
            if not (plain or wrapped):
                continue
            argv = _ends_command(tokens[k + 1 :])
            if kind == "span" and not argv:
                continue  # `chunkflow`: the name, not a command
            if kind == "comment" and not wrapped and not _looks_like_command(argv):
                continue
            commands.append(argv)
        elif DOCKER_IMAGE.search(token) and before[:2] == ["docker", "run"]:
            commands.append(_ends_command(tokens[k + 1 :]))
    return commands, None


def operator_fragment(span: str) -> list[str] | None:
    """`plugin -f my.py -i image` quoted in Markdown prose: an operator with some options."""
    try:
        tokens = shlex.split(substitute_variables(span))
    except ValueError:
        return None
    if len(tokens) < 2 or not _is_operator(tokens[0]):
        return None
    return _ends_command(tokens)


def dockerfile_command(path: Path) -> list[str] | None:
    """ENTRYPOINT ["chunkflow"] + CMD [...] of a Dockerfile, as chunkflow arguments."""
    entrypoint = cmd = None
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if m and m.group(1) == "ENTRYPOINT":
            entrypoint = json.loads(m.group(2))
        elif m:
            cmd = json.loads(m.group(2))
    if entrypoint and _is_chunkflow(entrypoint[0]):
        return entrypoint[1:] + (cmd or [])
    return None


def collect(files: list[Path] | None = None) -> list[Command]:
    commands: list[Command] = []
    for path in files if files is not None else source_files():
        rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
        for n, kind, text in logical_lines(file_lines(path)):
            found, error = commands_in_line(text, kind)
            if error:
                commands.append(Command(rel, n, text, error=error))
            commands += [Command(rel, n, text, argv) for argv in found]
            if kind == "span" and not found:
                argv = operator_fragment(text)
                if argv:
                    commands.append(Command(rel, n, text, argv, fragment=True))
        if path.name.startswith("Dockerfile"):
            argv = dockerfile_command(path)
            if argv is not None:
                lines = path.read_text().splitlines()
                line = next(
                    (n for n, text in enumerate(lines, 1) if text.startswith("CMD")),
                    next(n for n, text in enumerate(lines, 1) if text.startswith("ENTRYPOINT")),
                )
                commands.append(Command(rel, line, "ENTRYPOINT + CMD", argv))
    return commands


# ---------------------------------------------------------------------------------------------
# Parsing without running.


def parse(argv: list[str]) -> None:
    """Parse `chunkflow ARGV` the way click's chained group does before it invokes anything:
    the global options, then each operator with its options. Raises click.UsageError (unknown
    operator or option, bad value, missing required option)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            ctx = cli.make_context("chunkflow", list(argv), resilient_parsing=False)
            protected = getattr(ctx, "_protected_args", None)
            if protected is None:  # click < 8.2
                protected = ctx.protected_args
            args = [*protected, *ctx.args]
            while args:
                name, cmd, args = cli.resolve_command(ctx, args)
                sub = cmd.make_context(
                    name, args, parent=ctx, allow_extra_args=True, allow_interspersed_args=False
                )
                args, sub.args = sub.args, []
        except click.exceptions.Exit as exit_:  # --help, --version
            if exit_.exit_code != 0:
                raise click.UsageError(f"exited with {exit_.exit_code}") from None


COMMANDS = collect()


def _ids(commands: list[Command]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for command in commands:
        seen[command.where] = seen.get(command.where, 0) + 1
        count = seen[command.where]
        ids.append(command.where if count == 1 else f"{command.where}#{count}")
    return ids


def _describe(err: click.UsageError) -> str:
    where = f"{err.ctx.command.name}: " if err.ctx is not None and err.ctx.parent else ""
    return f"{where}{err.format_message()}"


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_command_line_parses(command: Command):
    if command.error:
        pytest.fail(f"{command.where}: {command.error}\n    {command.text}", pytrace=False)
    problem = None
    try:
        parse(command.argv)
    except click.MissingParameter as err:
        if not command.fragment:
            problem = _describe(err)
    except click.UsageError as err:
        problem = _describe(err)
    if problem:
        pytest.fail(
            f"{command.where}: chunkflow cannot parse this command line: {problem}\n"
            f"    line:   {command.text}\n"
            f"    parsed: chunkflow {shlex.join(command.argv)}",
            pytrace=False,
        )


# ---------------------------------------------------------------------------------------------
# The collector itself.


@pytest.mark.parametrize(
    "relative",
    [
        "README.md",
        "examples/demo.sh",
        "examples/hdf5_to_precomputed.sh",
        "examples/tasks_over_volume.sh",
        "examples/plugin_example.py",
        "examples/inference/README.md",
        "docker/README.md",
        "docker/Dockerfile",
        "docker/Dockerfile.cuda",
        "distributed/README.md",
        "distributed/kubernetes/deploy.yml",
        "distributed/slurm/chunkflow-array.sh",
        "distributed/parallel/run.sh",
    ],
)
def test_every_documented_source_yields_commands(relative):
    assert (REPO / relative) in source_files()
    assert any(c.path == relative for c in COMMANDS), f"no chunkflow command found in {relative}"


def _collect_text(tmp_path, name: str, text: str) -> list[Command]:
    path = tmp_path / name
    path.write_text(text)
    return collect([path])


def test_collector_joins_continuations_substitutes_variables_and_splits_quotes(tmp_path):
    script = (
        "#!/usr/bin/env bash\n"
        "# chunkflow as a Slurm job array (prose, not a command)\n"
        '#   chunkflow --dry-run generate-tasks -v "$VOL" -c 64 512 512 \\\n'
        "#       --respect-stop\n"
        'read -r -a chunk_size <<< "${CHUNK_SIZE:-64 512 512}"\n'
        'chunkflow --mip "$MIP" \\\n'
        '    generate-tasks -v "${INPUT_VOLUME}" -c "${chunk_size[@]}" \\\n'
        "    plugin -f p.py -a 'low=10;high=200' \\\n"
        "    save -v ${OUT:-file:///tmp/out} > log.txt 2>&1 &\n"
        "echo chunkflow is great\n"
        "parallel -N0 -j 4 --delay 1 chunkflow fetch-task -q file:///q ... "
        "delete-task-in-queue ::: $(seq 4)\n"
        "docker run --rm -v $PWD/data:/data chunkflow:cpu --help\n"
        "from chunkflow import Chunk\n"
    )
    found = {c.lineno: shlex.join(c.argv) for c in _collect_text(tmp_path, "x.sh", script)}
    assert found == {
        3: "--dry-run generate-tasks -v /placeholder/chunkflow-docs/vol -c 64 512 512 "
        "--respect-stop",
        6: "--mip 1 generate-tasks -v /placeholder/chunkflow-docs/input_volume -c 64 512 512 "
        "plugin -f p.py -a 'low=10;high=200' save -v file:///tmp/out",
        11: "fetch-task -q file:///q delete-task-in-queue",
        12: "--help",
    }


def test_collector_reads_dockerfiles_yaml_and_python_docstrings(tmp_path):
    dockerfile = 'FROM python:3.11-slim\nENTRYPOINT ["chunkflow"]\nCMD ["--help"]\n'
    assert [c.argv for c in _collect_text(tmp_path, "Dockerfile", dockerfile)] == [["--help"]]
    yaml = (
        "    app: chunkflow\n"
        "    args:\n"
        "      - |\n"
        '        exec chunkflow --mip "$MIP" \\\n'
        '          fetch-task -q "$QUEUE_NAME" -v "$VISIBILITY_TIMEOUT" delete-task-in-queue &\n'
    )
    assert [shlex.join(c.argv) for c in _collect_text(tmp_path, "x.yml", yaml)] == [
        "--mip 1 fetch-task -q /placeholder/chunkflow-docs/queue_name -v 1 delete-task-in-queue"
    ]
    python = '"""Run it with\n\n    chunkflow read-h5 -f a.h5 \\\n        write-tif -f a.tif\n"""\n'
    assert [c.argv for c in _collect_text(tmp_path, "x.py", python)] == [
        ["read-h5", "-f", "a.h5", "write-tif", "-f", "a.tif"]
    ]


def test_collector_reads_markdown_fences_and_inline_spans(tmp_path):
    text = (
        "Run `chunkflow --help`; `chunkflow` alone is a name.\n"
        "```bash\n"
        "chunkflow read-h5 -f a.h5 \\\n"
        "  write-tif -f a.tif\n"
        "```\n"
        "```python\n"
        "from chunkflow import Chunk\n"
        "```\n"
        "Quoted operators: `plugin -f my.py -i image`, `generate-tasks -q QUEUE`, `cutout`.\n"
    )
    found = [(c.lineno, c.argv, c.fragment) for c in _collect_text(tmp_path, "x.md", text)]
    assert found == [
        (1, ["--help"], False),
        (3, ["read-h5", "-f", "a.h5", "write-tif", "-f", "a.tif"], False),
        (9, ["plugin", "-f", "my.py", "-i", "image"], True),
        (9, ["generate-tasks", "-q", "QUEUE"], True),
    ]


def test_fragments_may_leave_out_required_options_but_not_misspell_them():
    fragment = Command(
        "x.md", 1, "generate-tasks -q QUEUE", ["generate-tasks", "-q", "Q"], None, True
    )
    test_command_line_parses(fragment)  # -c/--chunk-size is required but left out: fine
    whole = Command("x.md", 1, "chunkflow generate-tasks -q Q", ["generate-tasks", "-q", "Q"])
    with pytest.raises(pytest.fail.Exception, match="chunk-size"):
        test_command_line_parses(whole)
    typo = Command("x.md", 1, "generate-tasks --queue Q", ["generate-tasks", "--queue", "Q"])
    typo.fragment = True
    with pytest.raises(pytest.fail.Exception, match="No such option"):
        test_command_line_parses(typo)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no-such-operator"], "No such command"),
        (["read-h5", "-f", "a.h5", "--no-such-option"], "No such option"),
        (["create-bbox", "-s", "0", "0", "x"], "is not an integer"),
        (["fetch-task", "delete-task-in-queue"], "Missing parameter"),
        (["--no-such-global", "read-h5"], "No such option"),
        (["save", "-v", "a", "write-h5", "-f", "b.h5", "-v", "c"], "No such option"),
    ],
)
def test_parse_rejects_what_chunkflow_rejects(argv, message):
    with pytest.raises(click.UsageError, match=message):
        parse(argv)


def test_parse_accepts_help_and_aliases_without_running():
    parse(["--help"])
    parse(["read-h5", "--help"])
    parse(["--dry-run", "load-h5", "-f", "missing.h5", "save-precomputed", "-v", "/nonexistent"])
