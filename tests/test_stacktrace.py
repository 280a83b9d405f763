"""Stack traces are typed by exception, message and top application frames."""

from logcanary.engine.miner import TemplateMiner
from logcanary.engine.stacktrace import parse_stack_trace

JAVA = """Failed to process payment 42
java.lang.NullPointerException: Cannot invoke "Key.getEncoded()" because "this.key" is null
\tat java.base/java.util.Objects.requireNonNull(Objects.java:{line})
\tat com.acme.crypto.EncryptionService.encrypt(EncryptionService.java:{line})
\tat com.acme.PaymentProcessor.process(PaymentProcessor.java:41)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)"""

CAUSED = """Request failed
org.springframework.web.util.NestedServletException: Request processing failed
\tat org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)
Caused by: java.lang.IllegalStateException: pool exhausted after 30 s
\tat com.acme.db.Pool.borrow(Pool.java:77)
\tat com.acme.db.Repo.find(Repo.java:12)
\t... 52 more"""

PYTHON = """Unhandled error in worker
Traceback (most recent call last):
  File "/usr/lib/python3.11/site-packages/celery/app/trace.py", line 451, in trace_task
    R = retval = fun(*args, **kwargs)
  File "/srv/app/billing/tasks.py", line {line}, in charge
    amount = invoice["total"]
KeyError: 'total'"""

GO = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]

goroutine 1 [running]:
main.(*Server).handle(0x0, 0xc000012345)
\t/src/server.go:{line} +0x1d
main.main()
\t/src/main.go:12 +0x25"""


def test_java_trace_skips_library_frames() -> None:
    trace = parse_stack_trace(JAVA.format(line=10))
    assert trace is not None
    assert trace.exception == "java.lang.NullPointerException"
    assert trace.frames[0] == "com.acme.crypto.EncryptionService.encrypt"
    assert all(not frame.startswith(("java.", "org.springframework.")) for frame in trace.frames)
    assert trace.headline == "Failed to process payment 42"


def test_java_trace_is_typed_by_its_innermost_cause() -> None:
    trace = parse_stack_trace(CAUSED)
    assert trace is not None
    assert trace.exception == "java.lang.IllegalStateException"
    assert trace.frames == ("com.acme.db.Pool.borrow", "com.acme.db.Repo.find")


def test_python_and_go_traces() -> None:
    python = parse_stack_trace(PYTHON.format(line=3))
    assert python is not None
    assert (python.exception, python.frames) == ("KeyError", ("tasks.py:charge",))
    go = parse_stack_trace(GO.format(line=88))
    assert go is not None
    assert go.exception == "panic"
    assert go.frames[0] == "main.(*Server).handle"


def test_line_numbers_do_not_change_the_type_but_the_exception_does() -> None:
    miner = TemplateMiner()
    first = miner.add(JAVA.format(line=10))
    moved = miner.add(JAVA.format(line=99))
    other = miner.add(JAVA.format(line=10).replace("NullPointerException", "IllegalArgumentException"))
    assert first is moved
    assert other is not first
    for text in (PYTHON, GO):
        assert miner.add(text.format(line=1)) is miner.add(text.format(line=2))


def test_a_trace_is_never_the_same_type_as_a_plain_line() -> None:
    miner = TemplateMiner()
    trace = miner.add(JAVA.format(line=10))
    plain = miner.add("Failed to process payment 43")
    assert trace is not plain
    assert "java.lang.NullPointerException" in trace.text
    assert "EncryptionService.encrypt" in trace.text


def test_multiline_without_trace_is_one_line() -> None:
    miner = TemplateMiner()
    assert miner.add("query took 5 ms\nrows: 10").template_id == miner.add("query took 7 ms rows: 12").template_id


def test_a_python_traceback_after_the_loggers_prefix_is_a_trace() -> None:
    """oslo.log writes ``module [request] Traceback (most recent call last):`` at INFO: a trace all the same, whose
    headline is the prefix (issue 20: INFO-level tracebacks slipped through)."""
    message = PYTHON.format(line=7).replace(
        "Unhandled error in worker\nTraceback", "nova.metadata.wsgi.server [req-1 - - - - -] Traceback"
    )
    trace = parse_stack_trace(message)
    assert trace is not None
    assert trace.exception == "KeyError"
    assert trace.headline == "nova.metadata.wsgi.server [req-1 - - - - -]"
    assert trace.frames == ("tasks.py:charge",)
