"""Events of a run delivered to hooks and webhooks as the run goes."""
