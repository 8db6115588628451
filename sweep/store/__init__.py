"""Where it is stored: a storage URL opened with the storage rules and the study lock, the
queue (top-up, refill, pop), reads of Optuna's tables, what a trial records, recovery of
trials whose worker is gone, and how precise stored values are (standard errors, ties)."""
