"""Real Redis deployments (Cluster, Sentinel) that tests start on free loopback ports."""
