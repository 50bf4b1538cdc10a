"""The offline demo: a tiny Llama-architecture model, a synthetic preference task, DPO on CPU."""
