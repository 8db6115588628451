"""How trials run: `sweep run` and `sweep worker` (runner), local worker processes (pool), one
worker's loop (worker), progress lines, resume, time budgets, devices, and the whole study
report (reproduce, bonus, the final model's training)."""
