"""Connections: one server, Sentinel or Cluster; the embedded Redis; which errors are transient."""
