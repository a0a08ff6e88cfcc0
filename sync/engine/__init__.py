"""The engine: intake records, the worker claims, sends and settles; retry, throttle and batches are its arithmetic; remap and explain decide again. No adapter is imported here."""
