"""What runs on worker hosts: the RQ worker, the turn job, the agent loop, models, tools."""
