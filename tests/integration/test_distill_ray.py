"""The Ray path of the loop (batch labelling and evaluation as Ray tasks) gives the same rounds
as the local path on the same input. Starts a local Ray instance with one CPU."""

from __future__ import annotations

import pytest

from duetto.calibrate import Target
from duetto.distill.loop import LoopConfig, run_rounds
from duetto.distill.ray_exec import LocalExecutor, RayExecutor
from duetto.distill.students.head import HeadStudent
from duetto.distill.synthetic import HashedWords, synthetic
from duetto.distill.teachers import GoldTeacher

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_ray_and_local_paths_give_the_same_rounds() -> None:
    ds = synthetic(n_train=900, n_test=200, oos=True)
    teacher = GoldTeacher(ds.gold_labels())
    cfg = LoopConfig(train=200, rounds=2, calib=150, traffic=700, target=Target("quality", 0.9))

    def make() -> HeadStudent:
        return HeadStudent(ds.labels, embedder=HashedWords())

    local = run_rounds(ds, teacher, make, cfg, LocalExecutor(batch_size=100)).to_dict()
    executor = RayExecutor(num_cpus=1, batch_size=100)
    try:
        remote = run_rounds(ds, teacher, make, cfg, executor).to_dict()
    finally:
        executor.shutdown()
    for rounds in (local["rounds"], remote["rounds"]):
        for r in rounds:
            r.pop("seconds")
    assert remote == local
    assert local["rounds"][-1]["llm_call_share"] < 1.0
