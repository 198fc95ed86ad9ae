"""A run: reconcile, plan, execute (download -> convert -> push -> retire), composed by the pipeline."""
