"""Serving a model: an OpenAI-compatible HTTP server and a terminal chat, over subjectlm.backends.

    server.py     `subjectlm serve`: ServeConfig, the routes (/v1/models, /v1/chat/completions, /v1/completions),
                  request checks, the API key (FastAPI + uvicorn)
    respond.py    the one respond path of both completion routes: take a slot, then stream or collect the answer
    responses.py  the OpenAI-shaped bodies as plain dicts (completions, stream chunks, usage, errors): pure
    admission.py  the server's slots, queue, deadlines and cancellation
    chat.py       `subjectlm chat`: multi-turn chat in the terminal, streamed, or one --prompt
    model_fields.py  AnsweringModel: the model flags chat and serve share (model, backend, dtype, device, ...)
"""
