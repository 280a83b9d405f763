"""Property tests: the engine never raises and keeps its bounds, whatever the text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.masking import mask
from service.engine.miner import TemplateMiner
from service.engine.model import Engine
from service.engine.stacktrace import parse_stack_trace

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=400) | st.text(
    alphabet=" \t\n=:./\\-_\"'()[]{}<>*0123456789abcdefxXat", max_size=300
)


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, min_size=1, max_size=20))
def test_engine_never_raises(messages: list[str]) -> None:
    engine = Engine(max_templates_per_service=10)
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
