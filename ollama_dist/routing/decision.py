"""The decision: hard rules, the soft score and the second opinion combined -> Decision.

Built once from settings; `Router.decide` is pure and cheap. In order:

1. an explicit `kind:` decides alone;
2. a hard rule (routing/rules.py) decides, unless the second opinion overturns it:
   - a word rule's *cloud*, when it fired on a topic word (a `topic` pattern in data/router.yaml:
     "legal", "debug"; never a pattern naming the work: a diagnosis, a design, a trade-off, a
     feature, a proof), a mechanical verb governs the instruction (nothing asked, no judgement
     verb, no qualitative goal), its nearest exemplars are clearly local (P(local) >
     `semantic_rule_override`) and nothing the words cannot show says cloud;
   - a word rule's *local*, when the instruction is not plainly mechanical and its nearest
     exemplars are not local (P(local) <= t where it asks or a judgement verb leads, else
     <= 1 - `semantic_override`).
   The safety rules (`safety_rules` in data/router.yaml: complaint, sensitive), an upset
   message, a long context and an explicit `kind:` are never put to the second opinion;
3. otherwise the soft score (routing/score.py) decides, reviewed by the second opinion:
   `cloud unless P(local) > t`, raised to `semantic_override` where the instruction asks a
   question, a judgement verb leads a sentence, or the score is in doubt and the nearest
   exemplar is far (not for a short instruction a mechanical verb governs with no marker of
   reasoning: there the doubt is only few words); a judgement verb governing the instruction,
   a score clearly cloud, a question with an inference modal ("which line should move?"), a long
   input or a history of failed local answers veto local.

The costs are asymmetric (a reasoning task sent local costs quality, an easy task sent to
Claude costs cents), so every bar that sends work local is the higher one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.learning import failures
from ollama_dist.routing.rules import Hard, Instruction, Rules, Target, default_vocabulary, estimate_tokens, failing
from ollama_dist.routing.score import Scored, soft_score
from ollama_dist.tasks.model import Job, Task

# A score this far past its threshold (reasoning markers, a qualitative goal, many steps) keeps
# the task on cloud whatever the neighbours say: the asymmetric rule, when two opinions differ.
SCORE_VETO_MARGIN = 0.10
# Where the score is in doubt (cloud for low confidence), an opinion whose nearest exemplar is
# no nearer than this is a weak one: it needs the clear bar to send the task local.
NEAR_ENOUGH = 0.5
# ... except for a short instruction a mechanical verb governs with no marker of reasoning: there
# the doubt is the score's lack of evidence (few words), and the opinion's bar is t.
ONE_LINER_WORDS = 40


class Neighbour(BaseModel):
    """One of the exemplars nearest a task's instruction (cosine similarity of the embeddings)."""

    model_config = ConfigDict(frozen=True)

    id: str
    label: str  # deterministic | reasoning
    similarity: float
    name: str = ""  # the exemplar's first line (its name), to read without opening the bank


class Opinion(BaseModel):
    model_config = ConfigDict(frozen=True)

    p_local: float
    nearest: tuple[Neighbour, ...]
    said: str  # the opinion as a reason, written once per instruction (see `of`)

    @classmethod
    def of(cls, p_local: float, nearest: tuple[Neighbour, ...], k: int, how: str = "") -> Opinion:
        """`how`: how P(local) was reached, said after it (", the lower of two models' 0.91 and 0.40,")."""
        named = ", ".join(f"{n.id} {n.name!r} ({n.label}, {n.similarity:.2f})" if n.name else
                          f"{n.id} ({n.label}, {n.similarity:.2f})" for n in nearest)
        return cls(p_local=p_local, nearest=nearest,
                   said=f"second opinion: P(local) {p_local:.2f}{how} from the {k} nearest exemplars; nearest: {named}")


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    target: Target
    score: float
    confidence: float
    rule: str | None
    reasons: tuple[str, ...]
    p_local: float | None = None  # the second opinion, when it was asked
    nearest: tuple[Neighbour, ...] = ()
    moved_from: Target | None = None  # the router's own target, when the budget moved the job (routing.budget)


class Reviewer(Protocol):
    """The second opinion (ollama_dist.routing.second_opinion): the nearest labelled instructions."""

    def opinion(self, task: Task) -> Opinion | None:
        """None when it cannot run here; `unavailable` then says why."""

    @property
    def unavailable(self) -> str | None: ...


@dataclass
class Router:
    """Built once from settings; `decide` is pure and cheap."""

    settings: RouterSettings
    vocabulary: Mapping[str, Any] = field(default_factory=default_vocabulary)
    second_opinion: Reviewer | None = None

    def __post_init__(self) -> None:
        self.rules = Rules(self.settings, self.vocabulary)
        self._noted = False

    def decide(self, job: Job, history: TaskHistory | None = None) -> Decision:
        task = job.task
        if task.kind != "auto":
            target: Target = "cloud" if task.kind == "reasoning" else "local"
            return Decision(target=target, score=1.0 if target == "cloud" else 0.0, confidence=1.0,
                            rule=f"kind:{task.kind}", reasons=(f"task declares kind: {task.kind}",))

        info = self.rules.read(task)
        tokens = estimate_tokens(task.system or "", job.prompt)  # no copy of a long prompt
        hard = self.rules.hard(job, info, tokens, history)
        if hard is not None:
            opinion = self._opinion(task) if hard.reviewable else None
            if opinion is None:
                return Decision(target=hard.target, score=1.0 if hard.target == "cloud" else 0.0, confidence=0.9,
                                rule=f"{hard.target}:{hard.rule}", reasons=(hard.reason,))
            return review_rule(hard, info, opinion, self.settings, tokens, history)
        scored = soft_score(self.settings, job, info, tokens, history)
        opinion = self._opinion(task)
        if opinion is None:
            decision = Decision(target=scored.target, score=scored.score, confidence=scored.confidence, rule=None,
                                reasons=scored.reasons)
            return decision if self.second_opinion is None else self._note(decision)
        return review_score(scored, info, opinion, self.settings, tokens, history)

    def _opinion(self, task: Task) -> Opinion | None:
        return self.second_opinion.opinion(task) if self.second_opinion is not None else None

    def _note(self, decision: Decision) -> Decision:
        """Once per router: the second opinion is off, and why."""
        if self._noted or self.second_opinion is None:
            return decision
        self._noted = True
        note = f"second opinion off: {self.second_opinion.unavailable}; rules + score decided"
        return decision.model_copy(update={"reasons": decision.reasons + (note,)})


def _outside_words(s: RouterSettings, tokens: int, history: TaskHistory | None) -> str | None:
    """What says cloud that the embedding of the words cannot see."""
    if tokens > s.local_context_tokens:
        return f"~{tokens} input tokens, past the {s.local_context_tokens} local models handle well"
    if failing(history):
        assert history is not None
        return f"history: {failures(history)}"
    return None


def _decided(target: Target, score: float, rule: str | None, opinion: Opinion, reasons: list[str]) -> Decision:
    confidence = opinion.p_local if target == "local" else 1.0 - opinion.p_local
    return Decision(target=target, score=score, confidence=round(confidence, 3), reasons=tuple(reasons), rule=rule,
                    p_local=opinion.p_local, nearest=opinion.nearest)


def review_rule(hard: Hard, info: Instruction, opinion: Opinion, s: RouterSettings, tokens: int,
                history: TaskHistory | None) -> Decision:
    """A reviewable word rule's decision, with the second opinion: overturned only on a clear opinion."""
    reasons = [hard.reason, opinion.said]
    p, bar = opinion.p_local, s.semantic_override
    score, rule = (1.0 if hard.target == "cloud" else 0.0), f"{hard.target}:{hard.rule}"
    if hard.target == "cloud":
        bar = s.semantic_rule_override
        outside = _outside_words(s, tokens, history)
        if p > bar and outside is None:
            reasons.append(f"local: {info.lead!r} governs the instruction (mechanical: nothing asked, no judgement "
                           f"verb) and P(local) {p:.2f} > {bar:g}, the bar for overturning a word rule "
                           f"(router.semantic_rule_override): {hard.rule} fired on a topic word, not on the work")
            return _decided("local", 0.0, f"local:{hard.rule}-overturned", opinion, reasons)
        why = outside if p > bar else f"P(local) {p:.2f} <= {bar:g}, the bar for overturning a word rule"
        reasons.append(f"cloud: {hard.rule} stands ({why})")
        return _decided("cloud", score, rule, opinion, reasons)
    asks = _asks(info)
    low = s.semantic_threshold if asks else 1.0 - bar
    if p <= low:
        why = (f"{asks} and P(local) {p:.2f} <= t {low:g}" if asks else
               f"no mechanical verb governs it and P(local) {p:.2f} <= {low:g} (its nearest exemplars are cloud)")
        reasons.append(f"cloud: {hard.rule} overturned: {why}")
        return _decided("cloud", 1.0, f"cloud:{hard.rule}-overturned", opinion, reasons)
    reasons.append(f"local: {hard.rule} stands (P(local) {p:.2f} > {low:g})")
    return _decided("local", score, rule, opinion, reasons)


def review_score(scored: Scored, info: Instruction, opinion: Opinion, s: RouterSettings, tokens: int,
                 history: TaskHistory | None) -> Decision:
    """The soft score's decision, with the second opinion: local only when P(local) clears its bar
    (see the module docstring) and nothing vetoes. Otherwise cloud."""
    reasons = [*scored.reasons, opinion.said]
    p = opinion.p_local
    asks = _asks(info)
    if asks is None and scored.target == "cloud" and scored.score <= s.score_threshold and \
            (not opinion.nearest or opinion.nearest[0].similarity < NEAR_ENOUGH):
        if _one_liner(info):
            reasons.append(f"a short instruction {info.lead!r} governs (mechanical: no reasoning marker, nothing "
                           "asked): the score's doubt is too little evidence, not a sign of judgement, so t")
        else:
            asks = f"the score is in doubt and the nearest exemplar is far (similarity < {NEAR_ENOUGH:g})"
    bar = s.semantic_override if asks else s.semantic_threshold
    if p <= bar:
        reasons.append(f"cloud: P(local) {p:.2f} <= {bar:g}, the bar where {asks} (cloud unless P(local) clears it)"
                       if asks else f"cloud: P(local) {p:.2f} <= t {bar:g} (cloud unless P(local) > t)")
        return _decided("cloud", scored.score, None, opinion, reasons)
    cleared = f"P(local) {p:.2f} > {bar:g}, the bar where {asks}," if asks else f"P(local) {p:.2f} > t {bar:g}"
    veto = _veto(scored, info, s, tokens, history)
    if veto is not None:
        reasons.append(f"cloud: {cleared} but {veto} (when the words say judgement or the score says "
                       "cloud clearly, or for what the words cannot show, cloud)")
        return _decided("cloud", scored.score, None, opinion, reasons)
    reasons.append(f"local: {cleared} and nothing vetoes (the second opinion decides where no hard rule "
                   "fires; the score's verdict above is advisory)")
    return _decided("local", scored.score, None, opinion, reasons)


def _veto(scored: Scored, info: Instruction, s: RouterSettings, tokens: int, history: TaskHistory | None) -> str | None:
    if info.governed:
        return f"a judgement verb governs the instruction ({info.lead!r})"
    if info.modal:
        return f"the question asks what ought to be or would happen ({info.modal!r}), not what the text states"
    if scored.score > s.score_threshold + SCORE_VETO_MARGIN:
        return f"the score {scored.score:.2f} is clearly past its threshold {s.score_threshold:g}"
    return _outside_words(s, tokens, history)


def _one_liner(info: Instruction) -> bool:
    """A short, plainly mechanical instruction ("Add the nosniff header to every server block"): a
    mechanical verb governs it, nothing is asked, no judgement verb leads, no marker of reasoning
    or of a qualitative goal fires."""
    return info.mechanical and not info.reasoning and not info.quality and info.words <= ONE_LINER_WORDS


def _asks(info: Instruction) -> str | None:
    if info.question:
        return "the instruction asks a question"
    if info.judgement:
        return f"a judgement verb leads a sentence ({info.judgement!r})"
    return None
