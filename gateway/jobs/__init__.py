"""Work done once per store, not per request: settlements, pruning, reconcile, leader locks."""
