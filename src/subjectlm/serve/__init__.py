"""Serving a model: an OpenAI-compatible HTTP server and a terminal chat, over subjectlm.backends.

    server.py     `subjectlm serve`: /v1/models, /v1/chat/completions, /v1/completions (FastAPI + uvicorn)
    admission.py  the server's slots, queue, deadlines and cancellation
    chat.py       `subjectlm chat`: multi-turn chat in the terminal, streamed, or one --prompt
"""
