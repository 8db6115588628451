"""What a trial runs: the Optuna objective and the `ctx` a function receives, loading a user's
function, pruning (the paired pruner included), and the built-in network with its CIFAR-10
data and cache."""
