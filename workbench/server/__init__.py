"""The OpenAI-compatible HTTP API: a third surface over core, beside cli/ and tui/.

app.py (ASGI app and uvicorn), routes.py (endpoints), schemas.py (request bodies), api_errors.py (OpenAI
error JSON), engine.py (a scheduler thread per model), batching.py (batched decode).
"""
