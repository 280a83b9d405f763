"""Multi-line events: Java, Python and Go stack traces.

A stack trace is typed by what identifies a bug: the exception class, the
message's template and the top application frames (function names only, never
line numbers, so a rebuild that shifts lines keeps the type). Library and
runtime frames are skipped when choosing the top frames, because they say where
the failure surfaced, not which code caused it.

Every pattern here is linear in the line it reads: a trace's text is whatever a program printed, so no
quantifier may be made to try each way of splitting a long run (possessive quantifiers, atomic groups and
lookaheads that scan a part once); tests/test_linear_cost.py holds them to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOP_FRAMES = 3
# A long message is typed from a bounded view of it: its first and last lines, each cut. The head holds the
# headline, the exception and the top frames (Java, Go); the tail holds the innermost "Caused by:" with its
# frames (Java) and the exception line (Python, which prints it last).
VIEW_CHARS = 16 * 1024  # messages up to this long are parsed whole
VIEW_HEAD_LINES = 100
VIEW_TAIL_LINES = 100
VIEW_LINE_CHARS = 1024

_JAVA_FRAME = re.compile(r"^\s*at\s+([\w$.<>/]+)\(")
# A dotted class name whose last part holds Exception, Error or Throwable after its first character. Each part
# but the last is taken whole (a part followed by a dot), then the last part is searched once: trying every
# place of the word in a part like ``ErrorErrorError...!`` was quadratic.
_JAVA_EXCEPTION = re.compile(
    r"^(?:Exception in thread \".*?\"\s+)?(?:Caused by:\s+)?"
    r"([a-zA-Z_$][\w$]*+(?:\.[\w$]++(?=\.))*+\.[\w$](?=[\w$]*?(?:Exception|Error|Throwable))[\w$]*+)"
    r"(?::\s*(.*))?$"
)
_PY_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)')
# A name whose last dotted part holds one of the words (not as the name's first character); the same way.
_PY_EXCEPTION = re.compile(
    r"^([A-Za-z_](?:\w*+\.)*+(?=\w*?(?:Error|Exception|Exit|Interrupt|Warning|Iteration))\w*+)(?::\s*(.*))?$"
)
_GO_PANIC = re.compile(r"^(panic|fatal error):\s*(.*)$")
# A Go frame is ``function(arguments)``. Its function ends at the first "(" that no "." comes right before (one
# that does opens a receiver, ``.(*T)``), and must be a package path, then optional parts, the first of which
# holds a receiver's parenthesis or star (taken atomically: it can only be parsed one way), then ``.name``.
# One pattern for the whole line tried every way of sharing the parts between its runs: cubic.
_GO_CALL = re.compile(r"(?<!\.)\(")
_GO_FUNCTION = re.compile(r"[\w./-]+(?:(?>\.(?:\(\*?|\*)\w++\)?|\.\w++\))(?:\.\(?\*?\w++\)?)*)?\.\w+")

_LIBRARY_PREFIXES = (
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.", "groovy.",
    "org.springframework.", "org.apache.catalina.", "org.apache.tomcat.", "io.netty.", "reactor.",
    "runtime.", "net/http.", "testing.", "reflect.",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StackTrace:
    """The parts of a multi-line event that identify its type."""

    headline: str  # the log text before the trace (may be empty)
    exception: str  # exception class, or "panic" for Go
    message: str  # exception message (variable parts still in it; masking comes later)
    frames: tuple[str, ...]  # top application frames, innermost first

    @property
    def signature(self) -> str:
        """Exception class and frames: events with different signatures are never one type."""
        return "|".join((self.exception, *self.frames))


def _go_function(line: str) -> str | None:
    """The function of a Go frame line, ``main.(*T).run`` of ``main.(*T).run(0x1, 0x2)``; None if it is none."""
    call = _GO_CALL.search(line) if line.endswith(")") else None
    if call is None:
        return None
    function = line[: call.start()]
    return function if _GO_FUNCTION.fullmatch(function) else None


def _pick_frames(frames: list[str]) -> tuple[str, ...]:
    application = [f for f in frames if not f.startswith(_LIBRARY_PREFIXES)]
    return tuple((application or frames)[:TOP_FRAMES])


def _python_module(path: str) -> str:
    """A short, stable module name for a Python file path (site-packages count as library)."""
    if "site-packages" in path or "/lib/python" in path:
        return "lib:" + path.rsplit("/", 1)[-1]
    return path.rsplit("/", 1)[-1]


def bounded_lines(message: str) -> list[str]:
    """The message's lines, or for a long message (past ``VIEW_CHARS``) a bounded view: the first
    ``VIEW_HEAD_LINES`` and last ``VIEW_TAIL_LINES`` lines, each cut to ``VIEW_LINE_CHARS``. Found with
    ``str.find``, so a 1 MB message costs one scan and a few hundred short strings, whatever its shape."""
    if len(message) <= VIEW_CHARS:
        return message.splitlines()
    head: list[str] = []
    position, size = 0, len(message)
    while len(head) < VIEW_HEAD_LINES:
        end = message.find("\n", position)
        if end < 0:
            head.append(message[position : position + VIEW_LINE_CHARS].rstrip("\r"))
            return head
        head.append(message[position : min(end, position + VIEW_LINE_CHARS)].rstrip("\r"))
        position = end + 1
    tail: list[str] = []
    stop = size - 1 if message.endswith("\n") else size
    while len(tail) < VIEW_TAIL_LINES and stop > position:
        start = message.rfind("\n", position, stop) + 1  # 0 when none: then the line starts at position
        start = max(start, position)
        tail.append(message[start : min(stop, start + VIEW_LINE_CHARS)].rstrip("\r"))
        stop = start - 1
    tail.reverse()
    return head + tail


def parse_stack_trace(message: str) -> StackTrace | None:
    """The trace in a multi-line message, or None when it holds no recognisable trace.

    A message past ``VIEW_CHARS`` is read through :func:`bounded_lines`: typing a huge trace costs a bounded
    amount and still sees its exception, its top frames and its innermost cause.
    """
    lines = bounded_lines(message)
    if len(lines) < 2:
        return None
    return _parse_java(lines) or _parse_python(lines) or _parse_go(lines)


def _parse_java(lines: list[str]) -> StackTrace | None:
    frames = [m.group(1) for line in lines if (m := _JAVA_FRAME.match(line))]
    if not frames:
        return None
    for index, line in enumerate(lines):
        exception = _JAVA_EXCEPTION.match(line.strip())
        if exception:
            headline = " ".join(part.strip() for part in lines[:index])
            # The innermost cause names the real failure; its frames follow it.
            causes = [i for i, text in enumerate(lines) if text.lstrip().startswith("Caused by:")]
            if causes:
                last = _JAVA_EXCEPTION.match(lines[causes[-1]].strip())
                cause_frames = [m.group(1) for line in lines[causes[-1] :] if (m := _JAVA_FRAME.match(line))]
                if last and cause_frames:
                    return StackTrace(headline, last.group(1), last.group(2) or "", _pick_frames(cause_frames))
            return StackTrace(headline, exception.group(1), exception.group(2) or "", _pick_frames(frames))
    return None


_PY_START = "Traceback (most recent call last)"


def _parse_python(lines: list[str]) -> StackTrace | None:
    # The first line may carry the logger's own prefix (oslo.log: "module [request] Traceback (most recent ..."):
    # it is the headline, as the lines before it are.
    try:
        start = next(i for i, line in enumerate(lines) if _PY_START in line)
    except StopIteration:
        return None
    prefix = lines[start][: lines[start].index(_PY_START)].strip()
    frames = [f"{_python_module(m.group(1))}:{m.group(2)}" for line in lines if (m := _PY_FRAME.match(line))]
    for line in reversed(lines[start + 1 :]):
        exception = _PY_EXCEPTION.match(line.strip())
        if exception:
            frames.reverse()  # Python prints the innermost frame last
            application = [f for f in frames if not f.startswith("lib:")]
            chosen = tuple((application or frames)[:TOP_FRAMES])
            headline = " ".join([*(part.strip() for part in lines[:start]), *([prefix] if prefix else [])])
            return StackTrace(headline, exception.group(1), exception.group(2) or "", chosen)
    return None


def _parse_go(lines: list[str]) -> StackTrace | None:
    for index, line in enumerate(lines):
        panic = _GO_PANIC.match(line.strip())
        if panic:
            frames = [name for text in lines[index + 1 :] if (name := _go_function(text.strip()))]
            frames = [f for f in frames if not f.startswith("panic(")]
            headline = " ".join(part.strip() for part in lines[:index])
            return StackTrace(headline, panic.group(1), panic.group(2), _pick_frames(frames))
    return None
