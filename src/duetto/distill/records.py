"""The distillation loop's configuration and its output: one record per round.

`duetto.distill.loop` explains the protocol and runs it; these are plain data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from duetto.calibrate import Target

TracesMode = Literal["escalated", "all"]
DEFAULT_TARGET = Target("quality", 0.95)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    train: int = 1000  # teacher labels (traces) the student learns from, over all rounds
    rounds: int = 3
    target: Target = DEFAULT_TARGET  # agreement with the teacher on held-out data
    calib: int = 500  # held-out audit sample, labelled by the teacher, for the threshold
    test: int | None = None  # stratified test subsample; None: the whole test set
    traffic: int = 6000  # training-split queries that arrive as traffic
    traces: TracesMode = "escalated"
    calib_reference: Literal["teacher", "gold"] = "teacher"  # gold: a human-labelled audit set
    gate: bool = True  # deploy a round's student only if it beats the deployed one (held-out)
    margin_z: float = 1.28  # one-sided margin of the quality target (1.28: 90%)
    # Where the audit sample comes from: "validation" (the dataset's validation split), "train"
    # (disjoint from the traffic), "auto": validation when the dataset has one.
    calib_source: Literal["auto", "train", "validation"] = "auto"
    calib_oos_share: float | None = None  # out-of-scope share of a validation audit; None: test's
    oos_escalation: float = 0.9  # least share of the audit's out-of-scope queries to escalate
    seed: int = 0


@dataclass(slots=True)
class RoundRecord:
    round: int
    llm_call_share: float  # on the test set
    quality: float  # accuracy of the deployed system on the test set (gold labels)
    teacher_quality: float  # the teacher alone on the same test set
    student_accuracy: float | None  # the student on the whole test set
    local_share: float
    student_agreement: float | None = None  # student == teacher on the test set
    oos_escalated: float | None = None  # share of out-of-scope test queries escalated
    threshold: float | None = None
    calib_quality: float | None = None  # agreement with the teacher on held-out data
    calib_llm_share: float | None = None
    calib_margin: float | None = None  # the quality margin (absolute) the threshold had to clear
    calib_oos_escalated: float | None = None  # audit out-of-scope queries escalated (reference)
    # Gating: the round whose student is deployed after this round (0: none, all to the LLM),
    # whether this round's candidate was deployed, and the candidate's held-out operating point.
    # threshold / calib_* / student_* / test scores are those of the deployed system.
    deployed_round: int = 0
    candidate_deployed: bool | None = None
    candidate_threshold: float | None = None
    candidate_calib_quality: float | None = None
    candidate_calib_local_share: float | None = None
    traces: int = 0  # teacher labels the student was trained on
    traffic_seen: int = 0  # traffic queries served this round
    traffic_llm_share: float | None = None  # their share escalated (the LLM calls of the round)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LoopResult:
    task: str
    teacher: str
    upper_bound: bool
    student: str
    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "teacher": self.teacher,
            "teacher_is_upper_bound": self.upper_bound,
            "student": self.student,
            "config": self.config,
            "rounds": [r.to_dict() for r in self.rounds],
        }
