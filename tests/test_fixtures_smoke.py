def test_tiny_models_load(tiny_llama_dir, tiny_qwen2_dir):
    import torch
    from transformers import AutoModelForCausalLM

    for path in (tiny_llama_dir, tiny_qwen2_dir):
        model = AutoModelForCausalLM.from_pretrained(path)
        out = model(torch.tensor([[1, 2, 3]]))
        assert out.logits.shape[-1] == model.config.vocab_size
