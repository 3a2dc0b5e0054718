"""Training stages: pt (continued pre-training), sft (instruction tuning) and dpo, LoRA by default.

    config.py         TrainConfig and PTConfig / SFTConfig / DPOConfig (no torch import: --help stays fast)
    pt.py             `subjectlm pt`: documents -> EOS-joined blocks -> LoRA training
    sft.py            `subjectlm sft`: conversations, loss on assistant tokens only
    dpo.py            `subjectlm dpo`: TRL's DPOTrainer, the reference model without a second copy
    setup.py          what the three share: model + LoRA, the Trainer, callbacks, outputs
    templates.py      chat templates as pure functions: messages -> (text, trained) segments
    tokenize.py       records -> token ids and labels, cached on disk by the data's content hash
    packing.py        padding-free packed batches, attention kept inside each example
    loss.py           cross-entropy at label positions without holding their whole logits
    checkpointing.py  selective activation checkpointing
"""
