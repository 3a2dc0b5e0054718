"""Training stages: pt (continued pre-training), sft (instruction tuning) and dpo, LoRA by default.

    config.py         TrainConfig and PTConfig / SFTConfig / DPOConfig (no torch import: --help stays fast)
    pt.py             `subjectlm pt`: documents -> EOS-joined blocks -> LoRA training
    sft.py            `subjectlm sft`: conversations, loss on assistant tokens only
    dpo.py            `subjectlm dpo`: TRL's DPOTrainer, the reference model without a second copy
    run.py            the run the three share: output dir, tokenizer, data, model, Trainer, train, save
    model.py          tokenizer and base model (4/8-bit for QLoRA), then LoRA new or continued
    trainer.py        the label-only Trainer, its arguments from our config, metrics and progress callbacks
    outputs.py        output_dir: policy, metrics.jsonl, loss plot, the final save as one atomic swap
    templates.py      chat templates as pure functions: messages -> (text, trained) segments
    tokenize.py       records -> token ids and labels, cached on disk by the data's content hash
    packing.py        padding-free packed batches, attention kept inside each example
    loss.py           cross-entropy at label positions without holding their whole logits
    checkpointing.py  selective activation checkpointing
    speed.py          a LoRA projection as one autograd node (base matmul + rank-r product in one addmm)
"""
