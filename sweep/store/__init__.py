"""Where it is stored: a storage URL opened with the storage rules and the study lock
(storage; journal files in journal), outages and full servers (outage, connections), a study
as stored (study) and the parent a fine stage narrows from (parent), the queue (queue: top-up,
refill, pop; enqueue: what a queued trial holds), reads of Optuna's tables (queries), what a
trial records (records, the one owner of the keys), recovery of trials whose worker is gone,
and how precise stored values are (uncertainty: standard errors, McNemar ties; here, not in
results/, because the paired pruner in objectives/ needs it too)."""
