"""Export: a HF model as GGUF for llama.cpp, quantized, checked against the HF model, with an ollama Modelfile.

    job.py                 configs of `export gguf|verify|lora|ollama` and the recipe stage; export_all()
    convert.py             which converter writes the GGUF, and the checks every GGUF passes
    gguf.py                our table-driven converter: config.json, vocabulary and tensors -> one GGUF
    hparams.py             a config.json as GGUF hyperparameters, per family
    names.py               name tables: families, tensor names, pre-tokenizers (data only)
    vocab.py               a HF tokenizer as GGUF vocabulary, merges or scores, special ids, chat template
    llamacpp_converter.py  llama.cpp's own convert_hf_to_gguf.py, for families our table lacks
    quantize.py            quantize with llama.cpp itself
    verify.py              HF vs GGUF on the same tokens: KL divergence, top-1 agreement, perplexity
    lora.py                a PEFT LoRA adapter as a GGUF adapter (llama.cpp --lora)
    ollama.py              an ollama Modelfile beside a GGUF
"""
