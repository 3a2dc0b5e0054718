"""`--prompt_style cla3`: the letter scorer that answers C-Eval questions the way Chinese-LLaMA-Alpaca-3's scripts/ceval did.

That script ran `generate(max_new_tokens=1, output_scores=True)` with repetition_penalty 1.1 and
temperature 0.2 and read the *processed* scores of the one generated position: each token that
occurs in the prompt had its logit divided by 1.1 (if positive) or multiplied by 1.1 (if negative),
then every logit was divided by 0.2. A letter's score is the sum of two such scores: of the bare
letter token (`encode("A")`) and of the last token of `encode("：A")` (the same token in many
vocabularies, then simply counted twice). The prediction is the letter with the highest sum; the
"model output" it saved is the decoded top token of all processed scores. `letter_scores` does
exactly that on raw logits; the rest feeds it one question at a time, as the old script did, through
the transformers backend (raw logits over the whole vocabulary are needed for the penalty).

On Llama 3's vocabulary "：A" is "：" + "A" and every option line "\nA. " puts the letter tokens in the
prompt, so there the penalty shifts the four letters alike and the prediction is the raw-logit argmax;
it still changes the saved model output, and other vocabularies may differ (tests/test_legacy_prompts.py).

`cla3_scorer(flags)` is the letter entry of the scoring table (subjectlm.eval.exam.scoring) that
`eval exam --prompt_style cla3` runs with. It reads the hf backend's model directly: no backend
method gives raw logits over the whole vocabulary, which the penalty needs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from subjectlm.compat.cla3 import prompts as C
from subjectlm.eval.exam.prompts import LETTERS
from subjectlm.eval.exam.scoring import Chunk, Scorer

REPETITION_PENALTY = 1.1  # the old GenerationConfig
TEMPERATURE = 0.2


def letter_token_ids(encode: Callable[..., list[int]]) -> tuple[list[int], list[int]]:
    """(bare letter ids, ids of the letter after ：) as the old evaluator looked them up."""
    bare = [encode(letter, add_special_tokens=False)[0] for letter in LETTERS]
    after_colon = [encode("：" + letter, add_special_tokens=True)[-1] for letter in LETTERS]
    return bare, after_colon


def processed_scores(logits: Any, prompt_ids: Sequence[int]) -> Any:
    """generate()'s output scores for the first new token: repetition penalty on the prompt's tokens,
    then temperature. `logits` is the raw float vector over the vocabulary (a torch tensor)."""
    import torch

    scores = logits.float().clone()
    seen = torch.tensor(sorted(set(prompt_ids)), dtype=torch.long, device=scores.device)
    picked = scores[seen]
    scores[seen] = torch.where(picked < 0, picked * REPETITION_PENALTY, picked / REPETITION_PENALTY)
    return scores / TEMPERATURE


def letter_scores(logits: Any, prompt_ids: Sequence[int], bare: Sequence[int],
                  after_colon: Sequence[int]) -> tuple[list[float], int]:
    """(score per letter, id of the top processed token) for one question."""
    scores = processed_scores(logits, prompt_ids)
    per_letter = [float(scores[b] + scores[c]) for b, c in zip(bare, after_colon)]
    if any(math.isinf(v) or math.isnan(v) for v in per_letter):
        raise ValueError(f"letter scores are not finite: {per_letter}")
    return per_letter, int(scores.argmax())


def answer_chunk(backend: Any, chunk: Chunk, few_shot: bool = True, verbose: bool = False,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Predictions for some questions of one subject, in the old script's format and scoring."""
    from subjectlm.backends import BackendUnavailable

    if not hasattr(backend, "model") or not hasattr(backend, "tokenizer"):
        raise BackendUnavailable("--prompt_style cla3 reads raw logits over the whole vocabulary (for the old "
                                 "repetition penalty): use --backend hf")
    tokenizer = backend.tokenizer
    encode = lambda text, add_special_tokens=True: list(  # noqa: E731
        tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
    bare, after_colon = letter_token_ids(encode)
    name = C.subject_name(chunk.exam.info.handle, chunk.exam.info.name)
    records = []
    for doc in chunk.docs:
        text = C.prompt(name, chunk.shots, doc, few_shot=few_shot, with_prompt=chunk.config.with_prompt)
        ids = encode(text, add_special_tokens=C.TOKENIZE_WITH_SPECIAL_TOKENS)
        per_letter, top = letter_scores(backend.next_token_logits(ids), ids, bare, after_colon)
        pred = LETTERS[max(range(len(LETTERS)), key=lambda i: per_letter[i])]
        response = tokenizer.decode([top])
        top_score = max(per_letter)
        exps = [math.exp(v - top_score) for v in per_letter]
        records.append(chunk.record(
            doc, scores={k: round(v, 6) for k, v in zip(LETTERS, per_letter)},
            probs={k: round(e / sum(exps), 6) for k, e in zip(LETTERS, exps)},
            prediction=pred, answer=doc.answer, correct=None if doc.answer is None else pred == doc.answer,
            response=response))
        if verbose:
            log(f"======={doc.id}=======\ninstruction: {text}\nresponse: {response}\n"
                f"extracted answer: {pred}\nground truth: {doc.answer}")
    return records


def cla3_scorer(few_shot: bool, verbose: bool, log: Callable[[str], None] = print) -> Scorer:
    """The scoring table's letter entry for --prompt_style cla3 (--verbose prints each question to `log`)."""
    return Scorer(lambda backend, chunk: answer_chunk(backend, chunk, few_shot, verbose, log), prompt_style="cla3")
