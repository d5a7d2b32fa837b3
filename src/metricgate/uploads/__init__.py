"""metricgate's resumable upload sessions, directory commits, their sweeper and artifact references."""
