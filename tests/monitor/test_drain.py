"""Drain template miner: masking, merging, routing, match, restore after a restart, determinism."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch.monitor.drain import DEFAULT_MASKS, PARAM, Cluster, Drain


def state(miner: Drain) -> list[tuple[int, str, int]]:
    return [(c.id, c.template, c.size) for c in sorted(miner.clusters.values(), key=lambda c: c.id)]


def fits(cluster: Cluster, message: str, miner: Drain) -> bool:
    tokens = miner.tokenize(message)
    return len(tokens) == len(cluster.tokens) and all(t in (PARAM, m) for t, m in zip(cluster.tokens, tokens))


@pytest.mark.parametrize(("message", "tokens"), [
    ("id 123e4567-e89b-12d3-a456-426614174000 missing", "id <UUID> missing"),
    ("trace 4bf92f3577b34da6a3ce929d0e0e4736 dropped", "trace <HEX> dropped"),
    ("span 0x00f067aa0ba902b7 req_0123456789abcdef", "span <HEX> req_<HEX>"),
    ("digest deadbeef abc123", "digest deadbeef abc<NUM>"),  # short hex is not an id; its digits are numbers
    ("mail jane.doe+test@example.co.uk bounced", "mail <EMAIL> bounced"),
    ("connect 10.0.0.12:5432 refused from 192.168.1.1.", "connect <IP> refused from <IP>."),
    ("at 2026-08-21T10:15:30.123Z retry", "at <TIME> retry"),
    ("at 2026-08-21 10:15:30+02:00 retry", "at <TIME> retry"),
    ("on 2026-08-21, at 12:30:45", "on <TIME>, at <TIME>"),
    ("refund of $42.50 failed, cap $1,200 or €7", "refund of <AMOUNT> failed, cap <AMOUNT> or <AMOUNT>"),
    ("after 10000 ms delta -3.5 rows 10,000 version 1.2.3 flags 0x1f", "after <NUM> ms delta <NUM> rows <NUM> version <NUM> flags <NUM>"),
    # digits inside tokens are numbers too: the rest of the token stays in the template
    ("expected schema v12, got v11 on shard7 for cust-01003", "expected schema v<NUM>, got v<NUM> on shard<NUM> for cust-<NUM>"),
    # quoted identifier-like words are kept, other quoted text is <STR>; apostrophes are not quotes
    ("status 'shipped' is invalid", "status 'shipped' is invalid"),
    ('KeyError: "customer_id"', 'KeyError: "customer_id"'),
    ("got 'order was cancelled' from api", "got <STR> from api"),
    ('message "v12 missing" and \'\'', "message <STR> and <STR>"),
    ("can't find customer's order", "can't find customer's order"),
    ("said 'I can't do that' twice", "said <STR> twice"),
    # key=value and word:value split after the punctuation; commas, URLs, ==, :: stay whole
    ("error=timeout error=503 status:500", "error= timeout error= <NUM> status: <NUM>"),
    ('{"error":"timeout"}', '{"error": "timeout"}'),
    ("see https://api.example.com/orders x==y a, b,c fe80::1", "see https://api.example.com/orders x==y a, b,c fe<NUM>::<NUM>"),
])
def test_masking_table(message: str, tokens: str) -> None:
    assert " ".join(Drain().tokenize(message)) == tokens


def test_custom_masks_replace_the_defaults() -> None:
    assert Drain(masks=()).tokenize("user 123 said 'hi there'") == ["user", "123", "said", "'hi", "there'"]
    assert Drain(masks=DEFAULT_MASKS[-2:]).tokenize("ip 10.0.0.1") == ["ip", "<NUM>"]


def test_numbers_generalize_by_mask_or_by_merge() -> None:
    miner = Drain()
    first, change = miner.add("user 123 login failed")
    assert (first.id, first.template, change) == (1, "user <NUM> login failed", "created")
    again, change = miner.add("user 456 login failed")
    assert (again.id, again.template, again.size, change) == (1, "user <NUM> login failed", 2, "none")

    raw = Drain(masks=())  # without masks the differing token becomes <*>
    assert raw.add("user 123 login failed")[1] == "created"
    cluster, change = raw.add("user 456 login failed")
    assert (cluster.id, cluster.template, change) == (1, "user <*> login failed", "changed")


AGENT_ERRORS = {
    "timeout": ["lookup_order: upstream timeout after 10000 ms", "lookup_order: upstream timeout after 250 ms",
                "lookup_order: upstream timeout after 30000 ms"],
    "refused": ["lookup_order: upstream connection refused by 10.1.2.3:443",
                "lookup_order: upstream connection refused by 10.9.9.9:8443"],
    "503": ["refund_api returned 503 Service Unavailable", "refund_api returned 504 Service Unavailable"],
    "401": ["refund_api returned 401 Unauthorized"],
    "429": ["refund_api returned 429 Too Many Requests"],
    "expired": ["token expired for customer cust-01003", "token expired for customer cust-88812"],
    "revoked": ["token revoked for customer cust-01003"],
    "schema": ["inventory shard 7 returned SchemaVersionMismatch: expected schema v12, got v11",
               "inventory shard 12 returned SchemaVersionMismatch: expected schema v13, got v9"],
    "session": ["tool search_kb failed for session sess-a1b2c3", "tool search_kb failed for session s_99"],
}


def test_agent_errors_of_different_kinds_do_not_merge() -> None:
    miner = Drain()
    ids: dict[str, set[int]] = {}
    rounds = max(len(v) for v in AGENT_ERRORS.values())
    for i in range(rounds):  # interleave the kinds
        for kind, messages in AGENT_ERRORS.items():
            if i < len(messages):
                ids.setdefault(kind, set()).add(miner.add(messages[i])[0].id)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == len(AGENT_ERRORS)
    templates = {kind: miner.clusters[next(iter(v))].template for kind, v in ids.items()}
    assert templates == {
        "timeout": "lookup_order: upstream timeout after <NUM> ms",
        "refused": "lookup_order: upstream connection refused by <IP>",
        "503": "refund_api returned <NUM> Service Unavailable",
        "401": "refund_api returned <NUM> Unauthorized",
        "429": "refund_api returned <NUM> Too Many Requests",
        "expired": "token expired for customer cust-<NUM>",
        "revoked": "token revoked for customer cust-<NUM>",
        "schema": "inventory shard <NUM> returned SchemaVersionMismatch: expected schema v<NUM>, got v<NUM>",
        "session": "tool search_kb failed for session <*>",
    }
    assert sum(c.size for c in miner.clusters.values()) == sum(len(v) for v in AGENT_ERRORS.values())


@pytest.mark.parametrize("order", [["error=timeout", "error=503"], ["error=503", "error=timeout"]])
def test_key_value_pairs_generalize_the_value_in_either_order(order: list[str]) -> None:
    miner = Drain()
    assert miner.add(order[0])[1] == "created"
    cluster, change = miner.add(order[1])
    assert (cluster.id, cluster.template, change) == (1, "error= <*>", "changed")
    assert miner.add("lookup_order failed: error=timeout")[0].id == 2
    assert miner.add("lookup_order failed: error=500")[0].template == "lookup_order failed: error= <*>"


def test_similarity_threshold_and_tie_breaks() -> None:
    at = Drain(similarity=0.5)
    at.add("a b c d")
    assert at.add("a b x y") == (Cluster(1, ["a", "b", PARAM, PARAM], 2), "changed")  # 2/4 >= 0.5 merges
    above = Drain(similarity=0.6)
    above.add("a b c d")
    assert above.add("a b e f")[0].id == 2  # 2/4 < 0.6 creates
    assert above.add("a b c f")[0].id == 1  # 3/4 against both: the lower id wins

    params = Drain(similarity=0.6)
    params.add("a b c x y")
    params.add("a b p d e")
    assert params.add("a b q d e")[0].template == "a b <*> d e"
    # 3/5 against both; cluster 2 has more <*> so it wins despite the higher id
    assert params.add("a b c d z") == (Cluster(2, ["a", "b", PARAM, "d", PARAM], 3), "changed")


def test_depth_sets_the_routing_tokens() -> None:
    deep = Drain(masks=())  # depth 4: routes by "user" and the name, which are different leaves
    assert [deep.add(m)[0].id for m in ["user alice login failed", "user bob login failed"]] == [1, 2]
    shallow = Drain(depth=3, masks=())  # routes by "user" only
    assert [shallow.add(m)[0].id for m in ["user alice login failed", "user bob login failed"]] == [1, 1]
    assert shallow.clusters[1].template == "user <*> login failed"
    with pytest.raises(ValueError):
        Drain(depth=2)
    with pytest.raises(ValueError):
        Drain(similarity=1.5)
    with pytest.raises(ValueError):
        Drain(max_children=0)


def test_max_children_routes_new_tokens_to_the_param_child() -> None:
    small = Drain(max_children=3)
    assert [small.add(m)[0].id for m in ["a x y", "b x y", "c x y"]] == [1, 2, 3]
    # "a" and "b" took the two literal slots; "c" went to <*>, so "d x y" meets it there and merges
    assert small.add("d x y") == (Cluster(3, [PARAM, "x", "y"], 2), "changed")
    assert small.add("a x y")[0].id == 1  # existing children still route
    assert small.add("e q r")[0].id == 4  # the <*> leaf holds unrelated clusters as well
    roomy = Drain()
    assert [roomy.add(m)[0].id for m in ["a x y", "b x y", "c x y", "d x y"]] == [1, 2, 3, 4]
    single = Drain(max_children=1)
    assert [single.add(m)[0].id for m in ["a x y", "b x y"]] == [1, 1]


def test_match_never_learns_and_is_exact() -> None:
    miner = Drain()
    for m in ["user 1 login failed", "refund_api returned 503 Service Unavailable", "token expired for customer c1"]:
        miner.add(m)
    before = state(miner)
    hit = miner.match("user 77 login failed")
    assert hit is not None and hit.id == 1
    assert miner.match("user 77 login succeeded") is None  # add would merge it (3/4), match does not
    assert miner.match("something never seen") is None
    assert miner.match("") is None
    assert state(miner) == before
    assert miner.add("something never seen")[0].id == 4  # match did not reserve or use an id


def test_match_falls_back_when_a_message_routes_elsewhere_later() -> None:
    miner = Drain()
    assert miner.add("7 beta") == (Cluster(1, ["<NUM>", "beta"], 1), "created")  # routed to <*>
    assert miner.add("alpha beta") == (Cluster(1, [PARAM, "beta"], 2), "changed")  # "alpha" is no child: <*>
    assert miner.add("alpha gamma")[0].id == 2  # creates the child "alpha"
    hit = miner.match("alpha beta")  # routes to "alpha" now, where nothing fits: the full search finds 1
    assert hit is not None and hit.id == 1
    assert miner.add("alpha beta")[0].id == 2  # and Drain itself now puts it with "alpha gamma"


def messages(rng: random.Random, n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    kinds = [
        lambda: f"lookup_order: upstream timeout after {rng.randint(1, 99999)} ms",
        lambda: f"refund_api returned {rng.choice([429, 500, 503])} {rng.choice(['Service Unavailable', 'Bad Gateway'])}",
        lambda: f"token {rng.choice(['expired', 'revoked'])} for customer cust-{rng.randint(0, 99999):05d}",
        lambda: f"inventory shard {rng.randint(0, 9)} returned SchemaVersionMismatch: expected v{rng.randint(1, 20)}, got v3",
        lambda: f"user {rng.choice(words)} {rng.choice(['login', 'logout'])} failed",
        lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 5))),
        lambda: f"{rng.choice(words)} {rng.choice(words)} status={rng.choice(['timeout', 'denied', str(rng.randint(1, 600))])}",
        lambda: f"tool {rng.choice(words)}_{rng.randint(1, 3)} failed for session sess-{rng.choice(words)}",
    ]
    return [rng.choice(kinds)() for _ in range(n)]


@pytest.mark.parametrize("params", [{}, {"depth": 5, "max_children": 3, "similarity": 0.4}, {"depth": 3}])
def test_restore_continues_like_a_miner_that_never_stopped(params: dict[str, float]) -> None:
    stream = messages(random.Random(7), 200)
    original = Drain(**params)  # type: ignore[arg-type]
    for m in stream[:100]:
        original.add(m)
    rows = [(c.id, c.template, c.size) for c in original.clusters.values()]
    random.Random(1).shuffle(rows)  # row order does not matter
    restored = Drain.restore(rows, **params)  # type: ignore[arg-type]
    assert state(restored) == state(original)
    changes = {"created": 0, "changed": 0, "none": 0}
    for m in stream[100:]:
        (a, change_a), (b, change_b) = original.add(m), restored.add(m)
        assert (a.id, a.template, a.size, change_a) == (b.id, b.template, b.size, change_b), m
        changes[change_a] += 1
        assert original.match(m) == restored.match(m)
    assert state(restored) == state(original)
    assert all(changes.values()), changes  # the second half exercised all three outcomes


def test_restore_keeps_ids_and_numbers_new_ones_after_the_largest() -> None:
    miner = Drain.restore([(9, "user <NUM> login failed", 4), (5, "refund_api returned <NUM> <*> <*>", 2)])
    assert state(miner) == [(5, "refund_api returned <NUM> <*> <*>", 2), (9, "user <NUM> login failed", 4)]
    assert miner.add("user 3 login failed") == (Cluster(9, ["user", "<NUM>", "login", "failed"], 5), "none")
    assert miner.add("refund_api returned 503 Bad Gateway")[0].id == 5
    assert miner.add("brand new failure")[0].id == 10
    assert Drain().add("first")[0].id == 1
    assert Drain.restore([]).add("first")[0].id == 1
    with pytest.raises(ValueError, match="duplicate"):
        Drain.restore([(1, "a", 1), (1, "b", 1)])


def test_same_messages_give_the_same_ids_and_templates() -> None:
    stream = messages(random.Random(3), 300)
    runs = []
    for _ in range(2):
        miner = Drain()
        runs.append(([(c.id, change) for c, change in map(miner.add, stream)], state(miner)))
    assert runs[0] == runs[1]
    golden = Drain()
    out = [golden.add(m) for m in ["a b c", "a b d", "x 1 y", "x 2 y", "a b c"]]
    assert [(c.id, change) for c, change in out] == [(1, "created"), (1, "changed"), (2, "created"), (2, "none"), (1, "none")]
    assert state(golden) == [(1, "a b <*>", 3), (2, "x <NUM> y", 2)]


TOKENS = ["a", "b", "c", "x", "7", "v12", PARAM, "k=v", "k=3", "'q'", "'p q'", "cust-01"]


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(st.lists(st.sampled_from(TOKENS), max_size=6).map(" ".join), min_size=1, max_size=40),
       depth=st.integers(3, 5), max_children=st.integers(1, 4), similarity=st.sampled_from([0.0, 0.3, 0.5, 0.75, 1.0]),
       cut=st.integers(0, 40))
def test_every_added_message_matches_afterwards(stream: list[str], depth: int, max_children: int, similarity: float,
                                                cut: int) -> None:
    params = {"depth": depth, "max_children": max_children, "similarity": similarity}
    miner = Drain(**params)  # type: ignore[arg-type]
    added = [(m, miner.add(m)[0].id) for m in stream]
    assert sorted(miner.clusters) == list(range(1, len(miner.clusters) + 1))
    assert sum(c.size for c in miner.clusters.values()) == len(stream)
    for m, cluster_id in added:
        assert fits(miner.clusters[cluster_id], m, miner)  # templates only ever generalize
        hit = miner.match(m)
        assert hit is not None and fits(hit, m, miner)
        probe = Drain.restore(state(miner), **params)  # type: ignore[arg-type]
        cluster, change = probe.add(m)
        if change == "none":  # whenever add would change nothing, match names the same cluster
            assert cluster.id == hit.id
    # restore at any cut point continues identically
    first = Drain(**params)  # type: ignore[arg-type]
    for m in stream[:cut]:
        first.add(m)
    second = Drain.restore(state(first), **params)  # type: ignore[arg-type]
    for m in stream[cut:]:
        a, b = first.add(m), second.add(m)
        assert (a[0].id, a[0].template, a[1]) == (b[0].id, b[0].template, b[1])
    assert state(first) == state(second) == state(miner)
