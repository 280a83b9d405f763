"""Property tests: the engine never raises and keeps its bounds, whatever the text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from logcanary.engine.caps import Caps
from logcanary.engine.masking import mask
from logcanary.engine.miner import TemplateMiner
from logcanary.engine.model import Engine
from logcanary.engine.stacktrace import parse_stack_trace

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=400) | st.text(
    alphabet=" \t\n=:./\\-_\"'()[]{}<>*0123456789abcdefxXat", max_size=300
)


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, min_size=1, max_size=20))
def test_engine_never_raises(messages: list[str]) -> None:
    engine = Engine(caps=Caps(max_templates_per_service=10))
    miner = TemplateMiner(max_templates=5)
    for index, message in enumerate(messages):
        engine.observe("s", "d", message, float(index))
        template = miner.add(message)
        assert isinstance(template.template_id, str)
        assert isinstance(template.text, str)
        mask(message)
        parse_stack_trace(message)
    assert len(miner) <= 5


@settings(max_examples=200, deadline=None)
@given(texts)
def test_mining_is_deterministic(message: str) -> None:
    assert TemplateMiner().add(message).template_id == TemplateMiner().add(message).template_id


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(texts, st.sampled_from(["info", "WARN", "error", "fatal", "bogus", ""])), max_size=30),
    st.lists(st.tuples(texts, st.sampled_from(["info", "ERROR", "debug"])), max_size=30),
    st.sampled_from(["low", "medium", "high"]),
)
def test_analysis_never_raises(
    baseline: list[tuple[str, str]], canary: list[tuple[str, str]], sensitivity: str
) -> None:
    from logcanary.analysis.verdict import analyze

    engine = Engine(caps=Caps(max_templates_per_deployment=10))
    for index, (message, level) in enumerate(baseline):
        engine.observe("s", "v1", message, float(index), f"h{index % 2}", level)
    for index, (message, level) in enumerate(canary):
        engine.observe("s", "v2", message, float(index), f"h{index % 3}", level)
    verdict = analyze(engine.peek_service("s"), canary="v2", baseline=["v1"], history=True, sensitivity=sensitivity)  # type: ignore[arg-type]
    assert verdict.verdict in ("pass", "fail", "inconclusive")
    assert 0 <= verdict.risk <= 100
    canary_messages = {message for message, _ in canary}
    assert all(example in canary_messages for a in verdict.anomalies for example in a.examples)
