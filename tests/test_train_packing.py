"""A packed row gives each example exactly the loss it has alone: no attention or target crosses a boundary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subjectlm.train.packing import PackedCollator, PaddedCollator, register_varlen
from subjectlm.train.tokenize import IGNORE


def _examples():
    g = torch.Generator().manual_seed(0)
    out = []
    for n, n_prompt in ((9, 4), (17, 6), (5, 2)):
        ids = torch.randint(10, 1000, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * n_prompt + ids[n_prompt:]})
    return out


def _per_example_loss(logits, shift_labels, bounds):
    losses = F.cross_entropy(logits.flatten(0, 1).float(), shift_labels.flatten(), ignore_index=IGNORE,
                             reduction="none")
    mask = (shift_labels.flatten() != IGNORE).float()
    return [float((losses[a:b] * mask[a:b]).sum() / mask[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]


def _alone(model, ex):
    ids = torch.tensor([ex["input_ids"]])
    shift = torch.tensor([ex["labels"][1:] + [IGNORE]])
    return _per_example_loss(model(input_ids=ids).logits, shift, [0, len(ex["input_ids"])])[0]


@pytest.mark.parametrize("attn", ["subjectlm_varlen", "sdpa", "eager"])
def test_packed_loss_equals_one_by_one(tiny_llama_dir, attn):
    from transformers import AutoModelForCausalLM

    register_varlen()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation=attn)
    model.config.use_cache = False
    model.eval()
    examples = _examples()
    batch = PackedCollator()(examples)
    assert batch["position_ids"][0].tolist() == list(range(9)) + list(range(17)) + list(range(5))
    assert batch["cu_seq_lens_q"].tolist() == [0, 9, 26, 31]
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       cu_seq_lens_q=batch["cu_seq_lens_q"], max_length_q=batch["max_length_q"]).logits
        one_by_one = [_alone(model, ex) for ex in examples]
    together = _per_example_loss(packed, batch["shift_labels"], batch["cu_seq_lens_q"].tolist())
    assert together == pytest.approx(one_by_one, abs=1e-4)
    # and the packing is not vacuous: without restarting positions the examples would see each other
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"]).logits
    assert _per_example_loss(leaky, batch["shift_labels"], [0, 9, 26, 31])[1] != pytest.approx(one_by_one[1], abs=1e-3)


def test_padded_batch_matches_too(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    examples = _examples()
    batch = PaddedCollator(pad_token_id=0)(examples)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        one_by_one = [_alone(model, ex) for ex in examples]
    rows = [_per_example_loss(logits[i:i + 1], batch["shift_labels"][i:i + 1], [0, logits.shape[1]])[0]
            for i in range(3)]
    assert rows == pytest.approx(one_by_one, abs=1e-4)


def test_label_only_loss_matches_full_logits(tiny_llama_dir):
    """The trainer's loss (logits only where labels are, summed over the batch's label tokens) is the
    usual token-mean cross-entropy."""
    from transformers import AutoModelForCausalLM

    from subjectlm.train.trainer import LabelOnlyTrainer

    register_varlen()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32,
                                                 attn_implementation="subjectlm_varlen").eval()
    batch = PackedCollator()(_examples())
    trainer = LabelOnlyTrainer.__new__(LabelOnlyTrainer)  # compute_loss needs only args and a counter
    trainer.trained_tokens = 0

    class Args:
        average_tokens_across_devices = False

    trainer.args = Args()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        full = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                     cu_seq_lens_q=batch["cu_seq_lens_q"]).logits
    expected = F.cross_entropy(full.flatten(0, 1), batch["shift_labels"].flatten(), ignore_index=IGNORE)
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
