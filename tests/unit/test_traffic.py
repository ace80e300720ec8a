"""The demo traffic: the shipped sample's mix, gold answers, disjoint pools, and its redraw."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pytest

from duetto.eval import traffic
from duetto.eval.scorers import score
from duetto.eval.traffic import DEFAULT_SIZES, POOLS, load_traffic, plan, traffic_labels
from duetto.eval.traffic_sources import (
    CLASSIFY_TYPES,
    OUT_OF_SCOPE,
    extract_row,
    nearest_labels,
    query_anchor,
    values_by_type,
)
from duetto.eval.workload import WorkItem

OOS_SHARE = Fraction(1000, 5500)  # clinc150 test: 1000 out-of-scope of 5500 queries
SHIPPED_DIR = resources.files("duetto.data").joinpath("traffic")


@pytest.fixture(scope="module")
def pools() -> dict[str, list[WorkItem]]:
    return {p: load_traffic(p) for p in POOLS}


def _stream(item: WorkItem) -> str:
    if item.task == "intent":
        if "oos" in item.tags:
            return "clinc150-oos"
        return "banking77" if "banking77" in item.tags else "clinc150"
    return "gsm8k" if item.task == "math" else str(item.task)


def test_plan_keeps_the_mix_and_the_oos_share() -> None:
    assert plan(360, OOS_SHARE) == {
        "banking77": 108,
        "clinc150": 88,
        "clinc150-oos": 20,  # 108 * 2/11 = 19.6
        "gsm8k": 72,
        "extract": 24,
        "classify": 24,
        "summarise": 24,
    }
    assert plan(7, OOS_SHARE) == {  # 4.2 / 1.4 / 1.4: the tie goes to math, 2 * 2/11 rounds to 0
        "banking77": 2,
        "clinc150": 2,
        "clinc150-oos": 0,
        "gsm8k": 2,
        "extract": 1,
        "classify": 0,
        "summarise": 0,
    }


def test_shipped_sample_loads_with_the_planned_counts(pools: dict[str, list[WorkItem]]) -> None:
    for pool, items in pools.items():
        assert len(items) == DEFAULT_SIZES[pool]
        assert len({it.id for it in items}) == len(items)
        assert Counter(_stream(it) for it in items) == plan(len(items), OOS_SHARE)


def test_mix_is_60_20_20_within_rounding(pools: dict[str, list[WorkItem]]) -> None:
    for items in pools.values():
        n = len(items)
        intents = sum(it.task == "intent" for it in items)
        math = sum("gsm8k" in it.tags for it in items)
        pii = sum("pii" in it.tags for it in items)
        assert intents + math + pii == n
        for got, share in ((intents, 0.6), (math, 0.2), (pii, 0.2)):
            assert abs(got - share * n) <= 1, (got, share, n)
        assert abs(sum("banking77" in it.tags for it in items) - 0.3 * n) <= 1


def test_oos_share_of_clinc150_matches_its_test_set(pools: dict[str, list[WorkItem]]) -> None:
    for items in pools.values():
        clinc = [it for it in items if "clinc150" in it.tags]
        oos = [it for it in clinc if "oos" in it.tags]
        assert abs(len(oos) - len(clinc) * 2 / 11) <= 0.5 + 1e-9
        assert all(it.reference == OUT_OF_SCOPE for it in oos)
        assert all(it.choices[-1] == OUT_OF_SCOPE for it in clinc)  # offered to every query
    assert sum("oos" in it.tags for it in pools["test"]) == 20


def test_every_item_has_a_gold_answer_its_scorer_accepts(pools: dict[str, list[WorkItem]]) -> None:
    expected = {"intent": "choice", "math": "numeric", "extract": "exact"}
    expected |= {"classify": "choice", "summarise": "contains"}
    for items in pools.values():
        for it in items:
            assert it.reference, it.id
            assert it.scorer == expected[str(it.task)], it.id
            for alt in it.reference.split("|"):
                assert score(it, alt) == 1.0, (it.id, alt)
            if it.scorer == "choice":
                assert len(it.choices) >= 4
                wrong = [c for c in it.choices if c != it.reference]
                assert [score(it, c) for c in wrong] == [0.0] * len(wrong), it.id


def test_scorers_check_what_the_docs_say(pools: dict[str, list[WorkItem]]) -> None:
    items = {it.id: it for items in pools.values() for it in items}
    extract = next(it for it in items.values() if it.task == "extract" and "|" in it.reference)
    value, digits = extract.reference.split("|")
    assert score(extract, f"  {value.upper()}. ") == 1.0  # case, punctuation, spacing
    assert score(extract, digits) == 1.0
    assert score(extract, extract.request.last_user) == 0.0  # echoing the message fails
    summary = next(it for it in items.values() if it.task == "summarise")
    assert score(summary, f"The customer {summary.reference} writes in.") == 1.0
    assert score(summary, "A customer writes in.") == 0.0
    math = next(it for it in items.values() if it.task == "math")
    assert score(math, f"Steps... The answer is {math.reference}") == 1.0
    assert score(math, f"The answer is {float(math.reference) + 1}") == 0.0


def test_pools_are_disjoint(pools: dict[str, list[WorkItem]]) -> None:
    def messages(items: list[WorkItem]) -> set[str]:
        return {it.request.last_user.rsplit("Message: ", 1)[-1] for it in items}

    seen = {p: messages(items) for p, items in pools.items()}
    for p in POOLS:
        assert len(seen[p]) == len(pools[p]), p  # no message twice within a pool
    for a, b in (("train", "audit"), ("train", "test"), ("audit", "test")):
        assert not seen[a] & seen[b], (a, b)


def test_every_prefix_keeps_the_mix(pools: dict[str, list[WorkItem]]) -> None:
    items = pools["test"]
    full = Counter(_stream(it) for it in items)
    for n in range(5, len(items) + 1, 7):
        head = Counter(_stream(it) for it in items[:n])
        for stream, total in full.items():
            assert abs(head[stream] - total * n / len(items)) <= 1, (n, stream)
    assert load_traffic("test", limit=50) == items[:50]


def test_intent_requests_offer_the_gold_among_similar_names(
    pools: dict[str, list[WorkItem]],
) -> None:
    labels = traffic_labels()
    assert (len(labels["banking77"]), len(labels["clinc150"])) == (77, 150)
    assert labels["out_of_scope"] == (OUT_OF_SCOPE,)
    for it in (it for items in pools.values() for it in items if it.task == "intent"):
        ds = "banking77" if "banking77" in it.tags else "clinc150"
        in_scope = [c for c in it.choices if c != OUT_OF_SCOPE]
        assert len(in_scope) == 6 and set(in_scope) <= set(labels[ds]), it.id
        assert it.request.messages[0].role == "system"
        assert all(c in it.request.messages[0].content for c in it.choices)
        assert "Intents:" not in it.request.last_user  # the user message is the query alone


def test_nearest_labels_and_query_anchor() -> None:
    labels = ["card_arrival", "card_linking", "lost_or_stolen_card", "exchange_rate", "age_limit"]
    near = nearest_labels("card_arrival", labels, {}, 2, random.Random(0))
    assert near == ["card_linking", "lost_or_stolen_card"]  # share "card", then Jaccard
    domains = {"a_b": "x", "c_d": "x", "a_c": "y"}
    assert nearest_labels("a_b", ["a_b", "c_d", "a_c"], domains, 1, random.Random(0)) == ["c_d"]
    rng = random.Random(0)
    assert query_anchor("what is the rate of exchange today", labels, rng) == "exchange_rate"
    assert query_anchor("what are you", ["who_are_you", "age_limit"], rng) in {
        "who_are_you",
        "age_limit",
    }  # stop words are no overlap: a seeded pick


def test_pii_builders_use_the_labelled_spans() -> None:
    spans = [
        {"entity_type": "PERSON", "entity_value": "Yefremova"},
        {"entity_type": "PERSON", "entity_value": "Faina D. Yefremova"},
        {"entity_type": "CREDIT_CARD", "entity_value": "4454 7945 1139 0933"},
    ]
    values = values_by_type(spans)
    assert values == {"PERSON": ["Faina D. Yefremova"], "CREDIT_CARD": ["4454 7945 1139 0933"]}
    row = extract_row("x", "text", values, random.Random(0))
    assert row is not None
    assert row["reference"] == "4454 7945 1139 0933|4454794511390933"  # the rarer type first
    assert extract_row("x", "text", values, random.Random(0), allowed={"PERSON"}) is not None
    assert extract_row("x", "text", {"PERSON": ["A", "B"]}, random.Random(0)) is None
    assert "credit card number" in CLASSIFY_TYPES.values()


def test_manifest_matches_the_shipped_files(pools: dict[str, list[WorkItem]]) -> None:
    manifest = json.loads(SHIPPED_DIR.joinpath("manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 0 and manifest["sizes"] == DEFAULT_SIZES
    assert manifest["clinc150_oos_share"] == "2/11"
    total = 0
    for name, meta in manifest["files"].items():
        data = SHIPPED_DIR.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"], name
        total += len(data)
    assert 300_000 <= total <= 1_000_000  # the sample stays small
    for pool in POOLS:
        assert manifest["counts"][pool]["requests"] == len(pools[pool])
        tasks = Counter(str(it.task) for it in pools[pool])
        assert manifest["counts"][pool]["task"] == dict(tasks)
    assert SHIPPED_DIR.joinpath("ATTRIBUTION.md").is_file()


def test_load_traffic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pool must be one of"):
        load_traffic("dev")
    with pytest.raises(ValueError, match="pass data_dir"):
        load_traffic("test", sizes={"train": 1, "audit": 1, "test": 1})


@pytest.mark.shared_data
def test_redraw_from_shared_reproduces_the_shipped_files(shared_datasets: Path) -> None:
    files = traffic.sample_files(shared_datasets, seed=0)
    assert set(files) == {
        "train.jsonl",
        "audit.jsonl",
        "test.jsonl",
        "labels.json",
        "manifest.json",
    }
    for name, data in files.items():
        assert data == SHIPPED_DIR.joinpath(name).read_bytes(), f"{name} differs from the redraw"


@pytest.mark.shared_data
def test_load_traffic_draws_from_a_data_dir(shared_datasets: Path) -> None:
    sizes = {"train": 40, "audit": 10, "test": 20}
    test = load_traffic("test", shared_datasets, sizes=sizes)
    assert len(test) == 20
    assert Counter(_stream(it) for it in test) == plan(20, OOS_SHARE)
    # the same draw with the default sizes is the shipped sample
    assert load_traffic("audit", shared_datasets) == load_traffic("audit")
    other = load_traffic("test", shared_datasets, seed=1, sizes=sizes)
    assert [it.id for it in other] == [it.id for it in test]  # ids number the requests
    assert [it.request for it in other] != [it.request for it in test]  # another seed
