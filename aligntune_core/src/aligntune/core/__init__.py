"""Training entry points: `create_rl_trainer` (in `backend_factory`) and the training configuration."""
