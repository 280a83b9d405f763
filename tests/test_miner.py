"""Template mining: grouping, generalisation, stable ids, caps, persistence."""

import itertools
import json
import os
import subprocess
import sys

from logcanary.engine.miner import OTHER, TemplateMiner, template_id_of

LINES = [
    "Invalid user admin from 10.0.0.1",
    "Invalid user oracle from 10.0.0.2",
    "Invalid user test from 10.0.0.3",
    "Block blk_1 stored as bytes in memory (estimated size 5.2 KB, free 1 KB)",
    "Block blk_2 stored as values in memory (estimated size 5.2 KB, free 1 KB)",
    "Block blk_3 stored as bytes in memory (estimated size 9 KB, free 3 KB)",
    "Connection closed by 10.0.0.9 [preauth]",
]


def test_values_group_and_words_split() -> None:
    miner = TemplateMiner()
    templates = [miner.add(line) for line in LINES]
    users = {t.resolve().template_id for t in templates[:3]}
    assert len(users) == 1
    assert templates[0].resolve().text == "Invalid user <*> from <*>"
    bytes_, values, bytes_again = (t.resolve() for t in templates[3:6])
    assert bytes_ is bytes_again
    assert bytes_ is not values


def test_a_position_becomes_a_wildcard_after_three_values() -> None:
    miner = TemplateMiner()
    first = miner.add("Starting worker alpha")
    second = miner.add("Starting worker beta")
    assert first is not second
    third = miner.add("Starting worker gamma")
    assert first.resolve() is second.resolve() is third
    assert third.text == "Starting worker <*>"
    assert miner.get(first.template_id) is third  # old ids still resolve
    assert first.template_id in third.aliases or first is third


def test_ids_are_content_derived() -> None:
    miner = TemplateMiner()
    template = miner.add("Connection closed by 10.0.0.9 [preauth]")
    assert template.template_id == template_id_of("", ["Connection", "closed", "by", "<*>", "[preauth]"])


def test_ids_agree_across_processes() -> None:
    text = "\n".join(LINES * 3) + "\n"
    code = (
        "import sys, json\n"
        "from logcanary.engine.miner import TemplateMiner\n"
        "m = TemplateMiner()\n"
        "ids = [m.add(line).template_id for line in sys.stdin.read().splitlines()]\n"
        "print(json.dumps(ids))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    local = TemplateMiner()
    assert json.loads(runs[0]) == [local.add(line).template_id for line in text.splitlines()]


def test_state_round_trip_continues_with_the_same_ids() -> None:
    miner = TemplateMiner()
    for line in LINES[:4]:
        miner.add(line)
    restored = TemplateMiner.from_state(json.loads(json.dumps(miner.to_state())))
    assert {t.template_id for t in restored.templates.values()} == set(miner.templates)
    for line in [*LINES[4:], "Invalid user guest from 10.9.9.9"]:
        assert restored.add(line).template_id == miner.add(line).template_id


def test_template_cap_counts_overflow_in_other() -> None:
    miner = TemplateMiner(max_templates=50)
    for index in range(5000):
        miner.add(f"{index:x}word{'q' * (index % 7)} {'z' * (index % 11)}x unique{index}")
    assert len(miner) <= 50
    assert sum(len(bucket) for bucket in miner._buckets.values()) <= 50  # no hidden growth past the cap
    assert miner.overflow > 0
    assert miner.add("completely new line never seen before with words") in (OTHER, *miner.templates.values())


def test_match_does_not_learn() -> None:
    miner = TemplateMiner()
    miner.add("Invalid user admin from 10.0.0.1")
    assert miner.match("Invalid user admin from 10.0.0.7") is not None
    assert miner.match("Something else entirely") is None
    assert len(miner) == 1


def test_a_position_masked_in_the_first_message_is_a_wildcard_for_words_too() -> None:
    miner = TemplateMiner()
    miner.add("Failed none for invalid user 0 from 5.188.10.180 port 49811 ssh2")
    users = [miner.add(f"Failed none for invalid user {name} from 10.0.0.1 port 22 ssh2") for name in ("ann", "bob")]
    assert users[0] is users[1]
    assert users[0].text == "Failed none for invalid user <*> from <*> port <*> ssh2"


def test_words_that_always_come_in_pairs_name_kinds_of_event() -> None:
    miner = TemplateMiner()
    kinds = [("illegal", "instruction"), ("trap", "exception"), ("privileged", "operation"), ("unaligned", "access")]
    for first, second in kinds:
        for _ in range(2):
            miner.add(f"program interrupt: {first} {second} at 0x1f")
    assert len({t.text for t in miner.templates.values()}) == 4  # pairs repeat: kinds, not values


def test_unique_values_in_two_positions_are_still_parameters() -> None:
    miner = TemplateMiner()
    for user, host in [("alice", "hostA"), ("bob", "hostB"), ("carol", "hostC")]:
        template = miner.add(f"Login user {user} on {host}")
    assert template.text == "Login user <*> on <*>"


def _texts(miner: TemplateMiner) -> set[str]:
    return {template.text for template in miner.templates.values()}


def test_state_words_stay_apart_until_the_values_show_they_are_values() -> None:
    """Issue 20: ``VM Started`` / ``VM Paused`` / ``VM Resumed`` are kinds of event, however many instances log them;
    three values are no evidence. Capitalised or upper-case words, a field's label and a key's word value need it."""
    miner = TemplateMiner()
    for instance in range(20):
        for state in ("Started", "Paused", "Resumed", "Stopped"):
            miner.add(f"[instance: {instance:08x}-aaaa-bbbb-cccc-dddddddddddd] VM {state} (Lifecycle Event)")
    assert _texts(miner) == {
        f"[instance: <*>] VM {state} (Lifecycle Event)" for state in ("Started", "Paused", "Resumed", "Stopped")
    }


def test_methods_of_request_lines_stay_apart() -> None:
    miner = TemplateMiner()
    for index in range(30):
        for method in ("GET", "POST", "DELETE"):
            miner.add(f'10.0.0.{index} "{method} /v2/{index:032x}/servers HTTP/1.1" status: 200 len: {index} time: 0.2')
    assert _texts(miner) == {
        f'<*> "{method} <*> HTTP/<*>" status: <*> len: <*> time: <*>' for method in ("GET", "POST", "DELETE")
    }


def test_lower_case_names_are_values_after_three() -> None:
    miner = TemplateMiner()
    for _ in range(10):
        for user in ("cyrus", "news", "test"):
            miner.add(f"session opened for user {user} by (uid=0)")
    assert _texts(miner) == {"session opened for user <*> by (uid=<*>"}


def test_state_words_shared_by_two_positions_are_values() -> None:
    """``from NEW to INITED``, ``from INITED to RUNNING``: the same words at two positions are values of one domain."""
    miner = TemplateMiner()
    states = ["NEW", "INITED", "SETUP", "RUNNING", "COMMITTING", "SUCCEEDED"]
    for _ in range(3):
        for before, after in itertools.pairwise(states):
            miner.add(f"job_1445144423722_0020Job Transitioned from {before} to {after}")
    assert _texts(miner) == {"job_<*>_<*>Job Transitioned from <*> to <*>"}


def test_an_open_set_of_capitalised_words_becomes_a_value() -> None:
    """Words that keep coming, each once (names), are values: the Good-Turing chance of a new one stays high."""
    miner = TemplateMiner()
    for name in ["Alice", "Alice", "Alice", "Bob", "Carol"]:
        miner.add(f"Contact {name} added")
    assert len(_texts(miner)) == 3  # three words, and 2 of 5 messages brought a new one: not yet
    miner.add("Contact Dave added")  # 3 of 6 did
    assert _texts(miner) == {"Contact <*> added"}


def test_a_key_word_value_is_a_kind_until_the_key_shows_many() -> None:
    miner = TemplateMiner()
    for _ in range(30):
        miner.add("authentication failure; uid=0 tty=ssh rhost=10.0.0.1 user=root")
    for user in ("guest", "test"):
        for _ in range(5):
            miner.add(f"authentication failure; uid=0 tty=ssh rhost=10.0.0.1 user={user}")
    assert len(_texts(miner)) == 3
    for user in ("uucp", "ftp", "git"):
        miner.add(f"authentication failure; uid=0 tty=ssh rhost=10.0.0.1 user={user}")
    assert _texts(miner) == {"authentication failure; uid=<*> tty=ssh rhost=<*> user=<*>"}


def test_masked_values_do_not_make_messages_alike() -> None:
    """Drain's similarity counts constant tokens only: two events sharing nothing but a masked trace-id prefix are
    not one group whose words then become wildcards."""
    miner = TemplateMiner()
    prefix = "TraceID: fe3974115b911675d0640788986f80c9 SpanID: 2860714941507fd2"
    events = ["Start list products", "Start parse catalog", "List products end", "Parse catalog successfully"]
    for event in events:
        miner.add(f"{prefix} {event}")
    miner.add(f"{prefix} Query product successfully")
    assert "TraceID: <*> SpanID: <*> Query product successfully" in _texts(miner)


def test_a_message_shape_is_cached_on_its_second_sighting() -> None:
    """A message with a hex id has a shape no later message has: the first sighting only marks it, so the shape
    cache is not filled with shapes never seen again; the second caches it."""
    from logcanary.engine.miner import CacheBudget, ShapeFilter

    miner = TemplateMiner(cache_budget=CacheBudget())  # a filter of its own: nothing marked yet
    miner.add("Payment pay_1f2e3d4c5b6a authorized in 12 ms")
    assert not miner._by_shape  # seen once: not cached
    miner.add("Payment pay_1f2e3d4c5b6a authorized in 98 ms")  # the same shape (digits differ)
    assert len(miner._by_shape) == 1
    assert miner.add("Payment pay_1f2e3d4c5b6a authorized in 45 ms").text == "Payment pay_<*> authorized in <*>"

    shapes = ShapeFilter()
    for number in range(ShapeFilter.BITS // 4 + 10):  # past a quarter of its bits, it starts over
        shapes.seen_before(str(number).encode())
    assert shapes._marked <= ShapeFilter.BITS // 4
