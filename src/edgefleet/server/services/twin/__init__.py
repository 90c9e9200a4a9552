"""The fleet's digital twin: a rollout spec run on a simulated fleet in virtual time, decided by the real
rollout policy (docs/rollouts.md, "Plan a rollout"; docs/decisions.md on why it lives in the services)."""
