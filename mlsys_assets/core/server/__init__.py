"""The scoring server of every declared system, on uvicorn and Starlette: one module per job."""
